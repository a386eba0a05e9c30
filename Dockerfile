# edgecut on the CPU: a slim image whose entry point is the `edgecut` command.
#   docker build -t edgecut .
#   docker run --rm edgecut hub --help
#   docker run --rm -p 8000:8000 -e EDGECUT_BROKER=mqtt://broker:1883 edgecut
# The CUDA variant is Dockerfile.cuda; docs/deploy.md says what was and was not run.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/edgecut
COPY pyproject.toml README.md ./
COPY cloud_hub cloud_hub
COPY edge_agent edge_agent
COPY edgecut edgecut
COPY models models
COPY protocol protocol
COPY simulations simulations
# tools: the hub splits full models (onnx); metrics: --http; codecs and images: what agents may send.
RUN /opt/edgecut/bin/pip install --no-cache-dir ".[tools,metrics,codecs,images]"

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/edgecut /opt/edgecut
ENV PATH=/opt/edgecut/bin:$PATH \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 edgecut
USER 10001
WORKDIR /home/edgecut
# The hub's /metrics, /health/live and /health/ready (--http below).
EXPOSE 8000
ENTRYPOINT ["edgecut"]
# Settings come from EDGECUT_* variables (EDGECUT_BROKER, EDGECUT_GROUP, EDGECUT_PROVIDERS, ...) or more arguments.
CMD ["hub", "--http", "0.0.0.0:8000"]
