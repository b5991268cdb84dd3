# The operator image; also the image of the fetch-model init container (`python3 -m batchpilot.fetch`).
# Not built by CI here (no container engine on the build machines); `docker build -t batchpilot/batchpilot:0.1.0 .`
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
USER 65532:65532
ENTRYPOINT ["python3", "-m", "batchpilot"]
CMD ["operator"]
