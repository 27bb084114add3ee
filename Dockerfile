# One image for the gateway, the relay, the consumer and the flashclaim command.
# Build: docker build -t flashclaim .   Run: docker run -e FLASHCLAIM_... flashclaim serve

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/flashclaim
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY lua ./lua
COPY migrations ./migrations
RUN /opt/flashclaim/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app flashclaim
COPY --from=build /opt/flashclaim /opt/flashclaim
ENV PATH=/opt/flashclaim/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLASHCLAIM_HOST=0.0.0.0 \
    FLASHCLAIM_METRICS_DIR=/tmp/flashclaim-metrics
USER 10001
WORKDIR /app
EXPOSE 8080
ENTRYPOINT ["flashclaim"]
CMD ["serve"]
