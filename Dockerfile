# crosswatchd container image.
#   Build:  docker build -t crosswatchd .
#   Run:    docker compose up -d   (see compose.yaml), or
#           docker run -d --name crosswatchd -p 8765:8765 -v crosswatchd-data:/data \
#             --env-file crosswatchd.env crosswatchd
#   Auth:   docker exec -it crosswatchd crosswatchd auth trakt
# Everything is configured by CROSSWATCHD_* environment variables (or a mounted file named
# by CROSSWATCHD_CONFIG); everything the daemon keeps lives in the /data volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY crosswatchd ./crosswatchd
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin crosswatchd \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && chmod 0700 /data

USER 10001:10001
ENV CROSSWATCHD_DATA_DIR=/data \
    CROSSWATCHD_HTTP__HOST=0.0.0.0 \
    CROSSWATCHD_HTTP__PORT=8765
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
    CMD ["crosswatchd", "healthcheck"]
# docker stop sends SIGTERM and waits 10 s: the daemon exits within a few seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["crosswatchd"]
CMD ["serve"]
