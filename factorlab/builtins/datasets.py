"""Built-in data sets: SynthFaces (rendered, no download) and the real data sets' official layouts.

Each registration says which factors the data set labels (`labels`), which ground truth it keeps
(`ground_truth`, from which a factor may derive its own labels) and, for real data sets, the `source`
that `factorlab prepare` uses to crop its faces once into a cache.
"""

from __future__ import annotations

from factorlab.hookspecs import Register, hookimpl

#: name -> (module, config model, labels, description); every real data set is a `Source` in its module.
REAL = {
    "affectnet": ("affectnet", "AffectNetConfig", ("expression",), "AffectNet (8 expressions; both releases)"),
    "ckplus": (
        "ckplus",
        "CKPlusConfig",
        ("expression", "identity"),
        "CK+ (expression + identity; subject-independent folds)",
    ),
    "fer2013": ("fer2013", "FER2013Config", ("expression",), "FER2013 (7 expressions, 48x48 grayscale)"),
    "rafdb": ("rafdb", "RAFDBConfig", ("expression",), "RAF-DB basic (7 expressions)"),
    "imagefolder": (
        "imagefolder",
        "ImageFolderConfig",
        None,  # the folder names label the factor its `factor` option names
        "any root/<class>/<image> tree (CASIA-WebFace too)",
    ),
}


@hookimpl
def factorlab_register_datasets(register: Register) -> None:
    register(
        "synthfaces",
        "factorlab.data.synthfaces:build",
        config="factorlab.data.synthfaces:SynthFacesConfig",
        description="procedurally rendered faces with ground-truth factors (no download)",
        labels=("expression", "identity", "pose", "glasses", "occlusion"),
        ground_truth="factorlab.data.synthfaces_render:PARAM_KEYS",
    )
    for name, (module, config, labels, description) in REAL.items():
        register(
            name,
            f"factorlab.data.{module}:build",
            config=f"factorlab.data.{module}:{config}",
            description=description,
            labels=labels,
            ground_truth=(),
            source=f"factorlab.data.{module}:SOURCE",
        )
