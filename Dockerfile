# PiServe: SDK build stage, ASP.NET runtime stage, non-root.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
# gcc builds the native matmul kernels (src/Inference/Native); without it the managed ones run.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Directory.Build.props PiServe.sln appsettings.json ./
COPY src/ src/
# The shipped default models: the Api project publishes them next to the executable (models/).
COPY models/ models/
# The shipped datasets (kjv-test, kjv-search), registered when none is configured.
COPY datasets/ datasets/
RUN dotnet publish src/Api -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0
# curl for the HEALTHCHECK (the aspnet image has none).
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app ./
# User models go to the /models volume; with none configured the shipped /app/models are served.
RUN mkdir -p /models /data && chown -R app:app /models /data
USER app
ENV ASPNETCORE_URLS=http://+:8080 \
    PiServe__ModelsRoot=/models \
    PiServe__DataDirectory=/data \
    DOTNET_gcServer=0
VOLUME ["/models", "/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD curl -fsS http://localhost:8080/health/live || exit 1
ENTRYPOINT ["dotnet", "piserve.dll"]
