# crosswatchd container image. Build: docker build -t crosswatchd .
# Run:   docker run -d --name crosswatchd -p 8765:8765 -v crosswatchd-data:/data \
#          -e CROSSWATCHD_TRAKT__CLIENT_ID=... -e CROSSWATCHD_TRAKT__CLIENT_SECRET=... crosswatchd
# Auth:  docker exec -it crosswatchd crosswatchd auth trakt
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY crosswatchd ./crosswatchd
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data crosswatchd \
    && mkdir -p /data && chown crosswatchd /data

USER crosswatchd
# Everything the daemon keeps (outbox, id cache, tokens, webhook secret) lives in /data.
ENV CROSSWATCHD_DATA_DIR=/data \
    CROSSWATCHD_HTTP__HOST=0.0.0.0 \
    CROSSWATCHD_HTTP__PORT=8765 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=60s --timeout=5s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CROSSWATCHD_HTTP__PORT', '8765'), timeout=3)"
# SIGTERM (docker stop) shuts down cleanly: no new webhooks, in-flight deliveries finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["crosswatchd"]
CMD ["serve"]
