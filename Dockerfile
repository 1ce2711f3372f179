# The default farm in a container: `docker compose up` (see docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl openssl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY emulators ./emulators
COPY scenarios ./scenarios
# python-qpid-proton builds its C engine from source where PyPI has no wheel for the
# platform: a compiler and OpenSSL's headers for that step only. A numeric non-root user:
# Kubernetes' runAsNonRoot can check a number, not a name (deploy/kubernetes runs as 10001 too).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
 && pip install --no-cache-dir . \
 && apt-get purge -y gcc libc6-dev libssl-dev && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 farm \
 && useradd --system --uid 10001 --gid 10001 --home /state farm \
 && mkdir -p /state && chown 10001:10001 /state
USER 10001:10001
VOLUME ["/state"]
# Inside the container every member listens on 0.0.0.0; the compose file publishes the ports
# on the host's loopback only.
CMD ["emulators", "run", "default", "--listen-host", "0.0.0.0", \
     "--state-dir", "/state", "--ready-file", "/state/ready.json"]
