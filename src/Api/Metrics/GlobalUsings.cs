// Lets Program.cs call AddPiServeMetrics()/MapPrometheusMetrics() without a using line of its own.
global using PiServe.Api.Metrics;
