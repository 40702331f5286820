"""torch.hub entry points: `torch.hub.load(repo, 'assemble_resnet50', pretrained=True)`.

Each entry point builds the timm model of the same name; keyword arguments go to `timm.create_model`
(e.g. `num_classes=10`, `features_only=True`).
"""

import timm

import timm_assemble  # noqa: F401  (registers the models with timm)

dependencies = ["timm", "torch", "huggingface_hub", "safetensors"]


def _entrypoint(name: str):
    def create(pretrained: bool = False, **kwargs):
        return timm.create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = name
    create.__doc__ = f"{timm.models.model_entrypoint(name).__doc__}\n\nKeyword arguments go to timm.create_model."
    return create


assemble_resnet50 = _entrypoint("assemble_resnet50")
assemble_resnet152 = _entrypoint("assemble_resnet152")
assemble_r50 = _entrypoint("assemble_r50")
assemble_r50d = _entrypoint("assemble_r50d")
assemble_r50d_se = _entrypoint("assemble_r50d_se")
assemble_r50d_sk = _entrypoint("assemble_r50d_sk")
assemble_r50_bl_sk = _entrypoint("assemble_r50_bl_sk")
