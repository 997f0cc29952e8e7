# syntax=docker/dockerfile:1
# One image for the four services and the migration step:
#   docker build -t kanban:dev .
#   docker run kanban:dev services.stations      (or services.stock, .orders, .alerts)
#   docker run kanban:dev tools.migrate stations (migrate one service's schema and exit)

# --- builder: the runtime virtualenv and the generated protobuf code -------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src

COPY requirements.txt ./
# Only the "# Runtime" section of requirements.txt, without pgserver: in a container
# the database is always named by DATABASE_URL, never embedded.
RUN awk '/^#/ { runtime = ($0 == "# Runtime"); next } runtime && NF' requirements.txt \
      | grep -v '^pgserver' > runtime.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile -r runtime.txt

# grpcio-tools lives in a throw-away venv: the final image never sees it.
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install "$(grep '^grpcio-tools' requirements.txt)"
COPY protos ./protos
RUN mkdir gen \
 && /opt/tools/bin/python -m grpc_tools.protoc -Iprotos --python_out=gen --grpc_python_out=gen \
      $(find protos -name '*.proto') \
 && find gen -type d -exec touch {}/__init__.py \;

# --- final: python, the venv, the code; no compilers, no pip cache ----------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen \
    KANBAN_GRPC_PORT=50051 \
    KANBAN_METRICS_PORT=9464 \
    KANBAN_HEALTH_PORT=8086
RUN groupadd --gid 10001 kanban \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kanban
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/gen /app/gen
COPY services /app/services
COPY tools /app/tools
USER 10001:10001
EXPOSE 50051 9464 8086
ENTRYPOINT ["python", "-m"]
CMD ["services.stations"]
