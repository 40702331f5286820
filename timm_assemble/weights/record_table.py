"""The weight records, one literal each; `records.py` and `weights/README.md` say what they mean.

`timm-assemble publish --update-record` rewrites this file in this form; edit it by hand the same way
(`tests/test_hub.py` checks the file is exactly what `render_record_table` makes of its records).
"""

from timm_assemble.weights.card import Metric
from timm_assemble.weights.records import OfficialCheckpoint, WeightRecord

RECORDS = (
    WeightRecord(
        name="assemble_resnet50.clova_in1k",
        architecture="assemble_resnet50",
        hf_hub_id="timm-assemble/assemble_resnet50.clova_in1k",
        license="apache-2.0",
        source=OfficialCheckpoint(
            name=(
                "Assemble-ResNet50 checkpoint (clovaai/assembled-cnn, 'pretrained model' Google Drive"
                " folder)"
            ),
            url="https://drive.google.com/drive/folders/1o8vj8_ZOPByjRKZzRPZMbuoKyxIwd_IZ",
            code="https://github.com/clovaai/assembled-cnn",
            license="apache-2.0 (license of clovaai/assembled-cnn, whose README links the checkpoints)",
            sha256_status=(
                "not yet recorded: timm-assemble weights fetch records the sha256 of every checkpoint"
                " file in the cache entry's provenance.json; publish --update-record copies them here"
            ),
        ),
        status_note=(
            "Not on the Hub yet, but available from the official source: pretrained=True downloads "
            "the official checkpoint from the authors' Google Drive folder on first use, converts it "
            "and caches it (timm-assemble weights fetch / install)."
        ),
        datasets=("imagenet-1k",),
        metrics=(
            Metric(
                name="top-1 accuracy",
                type="accuracy",
                value=82.78,
                dataset="ImageNet-1k",
                dataset_type="imagenet-1k",
                split="validation",
                provenance="paper",
                reference="Lee et al. 2020 (arXiv:2001.06268), Table 7, row E11",
                notes=(
                    "Official TF evaluation: resize shorter side to 292, centre crop 256. Not yet "
                    "measured on the converted weights."
                ),
            ),
            Metric(
                name="mCE",
                type="mCE",
                value=48.89,
                dataset="ImageNet-C",
                dataset_type="imagenet-c",
                split="validation",
                provenance="paper",
                reference="Lee et al. 2020 (arXiv:2001.06268), Table 7, row E11",
                notes=(
                    "Mean corruption error normalised by AlexNet (lower is better), as reported in "
                    "the paper. Not yet measured on the converted weights."
                ),
            ),
        ),
    ),
    WeightRecord(
        name="assemble_resnet152.clova_in1k",
        architecture="assemble_resnet152",
        hf_hub_id="timm-assemble/assemble_resnet152.clova_in1k",
        license="apache-2.0",
        source=OfficialCheckpoint(
            name=(
                "Assemble-ResNet152 checkpoint (clovaai/assembled-cnn, 'pretrained model' Google "
                "Drive folder)"
            ),
            url="https://drive.google.com/drive/folders/1o8vj8_ZOPByjRKZzRPZMbuoKyxIwd_IZ",
            code="https://github.com/clovaai/assembled-cnn",
            license="apache-2.0 (license of clovaai/assembled-cnn, whose README links the checkpoints)",
            sha256_status=(
                "not yet recorded: timm-assemble weights fetch records the sha256 of every checkpoint"
                " file in the cache entry's provenance.json; publish --update-record copies them here"
            ),
        ),
        status_note=(
            "Not on the Hub yet, but available from the official source: pretrained=True downloads "
            "the official checkpoint from the authors' Google Drive folder on first use, converts it "
            "and caches it (timm-assemble weights fetch / install)."
        ),
        datasets=("imagenet-1k",),
        metrics=(
            Metric(
                name="top-1 accuracy",
                type="accuracy",
                value=84.19,
                dataset="ImageNet-1k",
                dataset_type="imagenet-1k",
                split="validation",
                provenance="paper",
                reference=(
                    "Lee et al. 2020 (arXiv:2001.06268), Table 7, row E12; the official README's "
                    "expected evaluation output for this checkpoint is accuracy 0.841860"
                ),
                notes=(
                    "Official TF evaluation: resize shorter side to 257, centre crop 256. Not yet "
                    "measured on the converted weights."
                ),
            ),
            Metric(
                name="mCE",
                type="mCE",
                value=43.27,
                dataset="ImageNet-C",
                dataset_type="imagenet-c",
                split="validation",
                provenance="paper",
                reference="Lee et al. 2020 (arXiv:2001.06268), Table 7, row E12",
                notes=(
                    "Mean corruption error normalised by AlexNet (lower is better), as reported in "
                    "the paper. Not yet measured on the converted weights."
                ),
            ),
        ),
    ),
)
