// Lets the host's composition (Hosting/PiServeHost.cs) call AddPiServeMetrics()/MapPrometheusMetrics() without a using line of its own.
global using PiServe.Api.Metrics;
