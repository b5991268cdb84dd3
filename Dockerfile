# The operator image; also the image of the fetch-model init container (`python3 -m batchpilot.fetch`).
# `docker build -t batchpilot/batchpilot:0.1.0 .`; `make image` builds the same file with buildah on a Debian
# base made locally (hack/build-images.sh passes BASE_IMAGE).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && rm -rf /src
# A passwd entry for the runtime user: kopf names itself after getpass.getuser(), which fails without one
# (seen on a real node: "KeyError: 'getpwuid(): uid not found: 65532'" and a crash loop).
RUN groupadd --gid 65532 batchpilot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin batchpilot
WORKDIR /
USER 65532:65532
ENTRYPOINT ["python3", "-m", "batchpilot"]
CMD ["operator"]
