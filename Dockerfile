# The Cutover operator image.
#
#   make image                                   # docker build -t cutover:0.1.0 .
#   docker build --build-arg BASE_IMAGE=registry.example/python:3.11-slim .
#
# BASE_IMAGE is any Debian-like image with python3 (>= 3.11) and its venv module; both stages use
# it, so the virtualenv built in the first stage finds the same interpreter in the second.
ARG BASE_IMAGE=python:3.11-slim

# --- build: wheels for the project and every dependency, installed into a virtualenv ---------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/cutover
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
# Wheels first, then an install that may not reach the index: the runtime venv holds exactly
# what was built here. pip compiles .pyc files while installing, which the read-only runtime
# filesystem then only reads. pip itself is removed since nothing installs at run time.
RUN /opt/cutover/bin/pip wheel --wheel-dir /wheels . \
 && /opt/cutover/bin/pip install --no-index --find-links /wheels cutover \
 && /opt/cutover/bin/pip uninstall --yes pip

# --- runtime -----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cutover" \
      org.opencontainers.image.description="Kubernetes operator for blue-green migrations" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# HOME=/tmp: the only writable place under readOnlyRootFilesystem (the chart mounts an emptyDir
# there); no bytecode writes since the build precompiled it.
ENV PATH=/opt/cutover/bin:${PATH} \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/cutover /opt/cutover
# Numeric, so that Kubernetes can check runAsNonRoot without an /etc/passwd entry.
USER 65532:65532
# 8080: Kopf's liveness endpoint; 9090: Prometheus metrics (CUTOVER_METRICS_PORT).
EXPOSE 8080 9090
# Exec form: no shell in the loop, signals reach Kopf directly. The scope is the CMD so that
# `args:` in a pod spec replaces it (the chart passes --namespace=X or --all-namespaces, plus
# --standalone or --peering).
ENTRYPOINT ["kopf", "run", "-m", "cutover.handlers", "--liveness=http://0.0.0.0:8080/healthz"]
CMD ["--all-namespaces"]
