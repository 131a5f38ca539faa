# knd training image: the project over the official PyTorch CUDA image.
#
#   docker build -f dockerfiles/train_model.dockerfile -t knd-train .
#   docker run --rm --gpus all \
#     -v "$PWD/data:/app/data" -v "$PWD/models:/app/models" \
#     -v "$PWD/dvclive:/app/dvclive" -v "$PWD/wandb:/app/wandb" knd-train
#
# The default command is `knd train` (needs data/processed); any knd or dvc command can follow
# the image name. See docs/docker.md.
#
# BASE_IMAGE: pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime is the official image for the
# torch 2.11.0 that pyproject.toml pins (its torch is 2.11.0+cu128). pip treats it as satisfying
# torch==2.11.0 only because the versions match exactly: a base with another torch version gets
# the PyPI wheel (~4 GB) installed on top. Any base with python3 >= 3.11 and its venv module
# works; a plain Debian one installs torch from PyPI.
ARG BASE_IMAGE=pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A venv that still sees the base image's packages, so its torch is reused; where the base
# python has no ensurepip, the base's own pip installs into the venv.
RUN python3 -m venv --system-site-packages /opt/venv \
    || python3 -m venv --system-site-packages --without-pip /opt/venv

WORKDIR /app

# Dependency layer, rebuilt only when pyproject.toml changes: an empty stub stands in for knd.
COPY pyproject.toml ./
# DL3013 asks for pinned versions: this installs the project's own [train] extra, whose
# bounds live in pyproject.toml (one list of dependencies).
# hadolint ignore=DL3013
RUN mkdir knd && touch knd/__init__.py README.md \
    && python -m pip install '.[train]' \
    && rm -rf knd README.md build ./*.egg-info

# The project itself, replacing the stub.
COPY LICENSE README.md pyproject.toml params.yaml dvc.yaml ./
COPY conf/ conf/
COPY knd/ knd/
RUN python -m pip install --no-deps . \
    && rm -rf build ./*.egg-info

# /app/knd wins over the installed copy, so a checkout mounted on /app (for `dvc repro`) runs
# its own code, the code DVC hashes.
ENV PYTHONPATH=/app
RUN knd --help > /dev/null

CMD ["knd", "train"]
