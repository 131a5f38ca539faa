# knd inference image: `knd serve` on an ONNX export, without torch.
#
#   knd export                      # models/model.pt -> models/model.onnx
#   docker build -f dockerfiles/predict_model.dockerfile -t knd-predict .
#   docker run --rm -p 8000:8000 knd-predict
#   curl -F file=@clip.wav http://127.0.0.1:8000/predict
#
# The model is baked in from the build context (--build-arg MODEL=path/to/other.onnx picks
# another file); mounting a folder on /models replaces it: -v "$PWD/models:/models:ro".
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv \
    && groupadd --gid 10001 knd \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin knd

# knd with the [serve] extra only (pyproject.toml): the torch-free core, FastAPI and
# onnxruntime. pyproject.toml comes first, so the dependency layer is rebuilt only when it
# changes; an empty stub stands in for knd until the sources are copied.
WORKDIR /tmp/knd
COPY pyproject.toml ./
# DL3013 asks for pinned versions: this installs the project's own [serve] extra, whose
# bounds live in pyproject.toml (one list of dependencies).
# hadolint ignore=DL3013
RUN mkdir knd && touch knd/__init__.py README.md \
    && python -m pip install '.[serve]' \
    && python -m pip uninstall --yes knd
COPY LICENSE README.md pyproject.toml ./
COPY knd/ knd/
RUN python -m pip install --no-deps . \
    && python -c "import sys, knd.serving.serve; assert 'torch' not in sys.modules" \
    && rm -rf /tmp/knd

ARG MODEL=models/model.onnx
COPY ${MODEL} /models/model.onnx

USER 10001:10001
WORKDIR /home/knd
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["knd", "serve", "--model", "/models/model.onnx", "--host", "0.0.0.0", "--port", "8000"]
