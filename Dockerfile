# plcert, CPU image (API and CPU workers). GPU workers: Dockerfile.gpu.
#   docker build -t plcert:latest .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    PLCERT_DATA_DIR=/var/lib/plcert

# CPU build of torch from the PyTorch CPU index (an unpinned torch from PyPI pulls CUDA, GBs).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY plcore ./plcore
COPY service ./service
COPY worker ./worker
RUN pip install .

RUN useradd --system --uid 10001 --home-dir /var/lib/plcert plcert \
    && mkdir -p /var/lib/plcert && chown plcert /var/lib/plcert
USER plcert
VOLUME ["/var/lib/plcert"]
EXPOSE 8000

CMD ["uvicorn", "service.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
