# ticketgate container image: `docker build -t ticketgate .` at the repository root.
# One image runs the gateway (default: `ticketgate serve`) and the reference gRPC services
# (`docker run ticketgate services`). docs/operations.md describes the settings it needs.

# Pin the base by digest in your registry mirror for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: the build backend (hash-locked) builds the wheel, generating the protobuf
# modules from src/ticketgate/proto; the runtime venv gets the hash-locked dependencies and
# the wheel. Nothing of this stage but the runtime venv reaches the final image.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY deploy/install.sh deploy/requirements.txt deploy/requirements-build.txt ./deploy/
COPY src ./src
RUN sh deploy/install.sh /src /opt/build /opt/ticketgate

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 ticketgate \
    && useradd --system --uid 10001 --gid ticketgate --home-dir /var/lib/ticketgate \
       --shell /usr/sbin/nologin ticketgate \
    && install -d -o ticketgate -g ticketgate /var/lib/ticketgate
COPY --from=build /opt/ticketgate /opt/ticketgate
ENV PATH=/opt/ticketgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000
# The SQLite default (DATABASE_PATH=./var/ticketgate.db) lands here; production uses DATABASE_URL.
WORKDIR /var/lib/ticketgate
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SERVER_PORT', '8000'), timeout=2).status != 200)"]
# uvicorn handles SIGTERM itself (graceful shutdown); exec form keeps it PID 1's signal.
ENTRYPOINT ["ticketgate"]
CMD ["serve"]
