# alertbridge: embedded mode (SQLite journal in /var/lib/alertbridge). Build: docker build -t alertbridge .
# Run:   docker run -p 9095:9095 -v alertbridge-data:/var/lib/alertbridge alertbridge
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY sources ./sources
COPY sinks ./sinks
COPY correlators ./correlators
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/alertbridge --create-home alertbridge
COPY --from=build /install /usr/local
COPY config/alertbridge.yaml /etc/alertbridge/alertbridge.yaml
ENV ALERTBRIDGE_LISTEN=0.0.0.0:9095 \
    ALERTBRIDGE_DATA_DIR=/var/lib/alertbridge \
    ALERTBRIDGE_CONFIG=/etc/alertbridge/alertbridge.yaml \
    PYTHONUNBUFFERED=1
USER alertbridge
WORKDIR /var/lib/alertbridge
VOLUME ["/var/lib/alertbridge"]
EXPOSE 9095
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9095/readyz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["alertbridge", "serve"]
