"""Export a trained model to ONNX: encoder, branches and heads (and optionally the decoder), dynamic batch size.

The ONNX graph takes `images`, float32 (N, 3, S, S) RGB in [0, 1], and gives `logits/<factor>/<code>` for each
head and `code/<name>` for each code (and `reconstruction` with the decoder). Its metadata (key "factorlab",
JSON) holds the class names, the heads and codes with their output names, the input size and the run it comes
from, so `factorlab.load("model.onnx")` and `factorlab predict model.onnx ...` need nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from factorlab.errors import FactorlabError
from factorlab.predict import ONNX_META

OPSET = 18


class ExportedModel(nn.Module):
    """The parts of a Network that inference needs, with a flat tuple of outputs in the order `output_names` gives."""

    def __init__(self, net, *, decoder: bool = False) -> None:
        super().__init__()
        self.net = net
        self.links = list(net.head_links)
        self.codes = list(net.branches)
        self.decoder = decoder

    @property
    def output_names(self) -> list[str]:
        names = [f"logits/{link.factor}/{link.code}" for link in self.links] + [f"code/{c}" for c in self.codes]
        return names + (["reconstruction"] if self.decoder else [])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        codes = self.net.encode(images)
        logits = self.net.classify(codes)
        out = [*(logits[link.key] for link in self.links), *(codes[c] for c in self.codes)]
        if self.decoder:
            out.append(self.net.decode(codes))
        return tuple(out)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """Only critical records from these loggers inside the block (their levels are restored after)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def metadata(model, recipe, *, rundir: Path, checkpoint: str, decoder: bool) -> dict:
    """What a reader of the ONNX file needs to use it: classes, heads, codes, input size, where it came from."""
    import factorlab

    exported = ExportedModel(model.net, decoder=decoder)
    return {
        "format": 1,
        "factorlab_version": factorlab.__version__,
        "run": rundir.name,
        "checkpoint": checkpoint,
        "input": "images: float32 (N, 3, S, S) RGB in [0, 1], faces cropped as in training",
        "image_size": recipe.data.image_size,
        "margin": getattr(recipe.data.options, "margin", 0.2),
        "classes": model.classes,
        "heads": [
            {"factor": link.factor, "code": link.code, "output": f"logits/{link.factor}/{link.code}"}
            for link in exported.links
        ],
        "codes": {c: f"code/{c}" for c in exported.codes},
        "reconstruction": "reconstruction" if decoder else None,
    }


def export_onnx(
    rundir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    decoder: bool = False,
    opset: int = OPSET,
) -> Path:
    """Write the run's model as one ONNX file (weights inside) with a dynamic batch size; return its path.

    `checkpoint`: 'best' or 'last'; None = the recipe's run.checkpoint, the one summary.json scores."""
    from factorlab.files import atomic_write
    from factorlab.rundir import load_run

    rundir, out = Path(rundir), Path(out)
    recipe, model = load_run(rundir, checkpoint)
    checkpoint = checkpoint or recipe.run.checkpoint
    if decoder and model.net.decoder is None:
        raise FactorlabError(
            f"--decoder: the run {rundir} has no decoder (its recipe's loss.beta_rec is 0); export it without --decoder"
        )
    try:
        import onnx
    except ImportError:
        raise FactorlabError('ONNX export needs the onnx packages: pip install "factorlab[export]"') from None
    exported = ExportedModel(model.net, decoder=decoder).eval()
    size = recipe.data.image_size
    example = torch.rand(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    # the exporter prints its progress, and logs a traceback when it cannot convert to an older opset
    with contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("torch.onnx", "onnxscript"):
        try:
            program = torch.onnx.export(
                exported,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=exported.output_names,
                dynamic_shapes={"images": {0: batch}},
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
        except ImportError as exc:
            raise FactorlabError(f'ONNX export needs {exc.name}: pip install "factorlab[export]"') from None
        except Exception as exc:  # an operator the exporter cannot translate: say which part, keep --debug's traceback
            raise FactorlabError(
                f"torch.onnx could not export the model of {rundir} (encoder {recipe.encoder.type!r}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; try another --opset, "
                "or rerun with --debug for the exporter's traceback"
            ) from exc
    proto = program.model_proto
    written = next((i.version for i in proto.opset_import if i.domain in ("", "ai.onnx")), None)
    if written != opset:  # torch.onnx exports opset 18 and converts down only where ONNX has the adapters
        raise FactorlabError(
            f"--opset {opset}: torch.onnx could not write this opset (it wrote {written}); opsets 18 to "
            f"{onnx.defs.onnx_opset_version()} always work, older ones only where ONNX can convert every operator"
        )
    meta = metadata(model, recipe, rundir=rundir, checkpoint=checkpoint, decoder=decoder)
    del proto.metadata_props[:]
    for key, value in ((ONNX_META, json.dumps(meta)), ("classes", json.dumps(model.classes)),
                       ("image_size", str(size))):  # fmt: skip
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.doc_string = f"factorlab model of run {rundir.name} ({checkpoint} checkpoint): {meta['input']}"
    onnx.checker.check_model(proto)
    atomic_write(out, lambda tmp: onnx.save_model(proto, str(tmp)))
    return out
