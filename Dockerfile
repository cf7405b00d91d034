# Switchboard: one bot process. Configure with environment variables (SWITCHBOARD_*) and/or a TOML file
# mounted at /config/switchboard.toml; secrets only from the environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SWITCHBOARD_CONFIG=/config/switchboard.toml

WORKDIR /app
COPY pyproject.toml README.md bot.py settings.py ./
COPY agents ./agents
COPY bridges ./bridges
COPY models ./models
COPY migrations ./migrations
COPY ops ./ops
RUN pip install --no-cache-dir . && useradd --system --home-dir /data switchboard \
    && mkdir -p /data /config && chown switchboard /data && touch /config/switchboard.toml

USER switchboard
WORKDIR /data
# SQLite lands in /data unless SWITCHBOARD_DATABASE__URL points at PostgreSQL.
VOLUME ["/data"]
EXPOSE 9300 8443
# For a Telegram webhook also set [telegram] webhook_listen = "0.0.0.0:8443" (see README).
ENV SWITCHBOARD_OPS__LISTEN=0.0.0.0:9300
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9300/healthz').status != 200)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchboard"]
CMD ["run"]
