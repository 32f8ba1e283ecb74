using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using PiServe.Api.Models;
using PiServe.Api.OpenAi;
using PiServe.Eval.Jobs;
using PiServe.Eval.Suites;
using PiServe.Api.Errors;

namespace PiServe.Api.Evals;

/// <summary>POST /v1/evals: {kind, model, dataset, parameters, rope_scaling?}.</summary>
public sealed record EvalCreateRequest(
    [property: JsonPropertyName("kind")] string? Kind,
    [property: JsonPropertyName("model")] string? Model,
    [property: JsonPropertyName("dataset")] string? Dataset,
    [property: JsonPropertyName("parameters")] JsonObject? Parameters,
    [property: JsonPropertyName("rope_scaling")] JsonObject? RopeScaling);

/// <summary>POST /v1/diagnostics/attention-scores: a model, a text (or a dataset document) and a rope configuration.</summary>
public sealed record AttentionScoresRequest(
    [property: JsonPropertyName("model")] string? Model,
    [property: JsonPropertyName("text")] string? Text,
    [property: JsonPropertyName("dataset")] string? Dataset,
    [property: JsonPropertyName("parameters")] JsonObject? Parameters,
    [property: JsonPropertyName("rope_scaling")] JsonObject? RopeScaling);

/// <summary>POST /v1/models/{id}/variants: a new model id on the same weights, with rope_scaling or a finished LongRoPE search's factors.</summary>
public sealed record VariantRequest(
    [property: JsonPropertyName("id")] string? Id,
    [property: JsonPropertyName("rope_scaling")] JsonObject? RopeScaling,
    [property: JsonPropertyName("from_job")] string? FromJob,
    [property: JsonPropertyName("context_window")] int? ContextWindow);

/// <summary>Evaluation jobs, attention-score diagnostics, model variants and the dataset list.</summary>
public static class EvalEndpoints
{
    public static IEndpointRouteBuilder MapEvalEndpoints(this IEndpointRouteBuilder app)
    {
        // Jobs and variants live in the job store: while it cannot be used, these answer 503 (completions keep serving).
        var evals = app.MapGroup("/v1/evals").WithTags("Evaluations").AddEndpointFilter(RequireJobStore);
        evals.MapPost("", Create).WithName("CreateEval").Accepts<EvalCreateRequest>("application/json")
            .Produces<JsonObject>(202).Produces<ErrorBody>(400).Produces<ErrorBody>(404);
        evals.MapGet("", (string? state, string? model, EvalJobRunner runner) => Guard(() =>
            Results.Json(new JsonObject
            {
                ["object"] = "list",
                ["data"] = new JsonArray(runner.List(state, model).Select(j => (JsonNode)j.ToJson(includeResults: false)).ToArray()),
            }))).WithName("ListEvals").Produces<JsonObject>().Produces<ErrorBody>(400);
        evals.MapGet("/{id}", (string id, EvalJobRunner runner) =>
            Results.Json(runner.Get(id)?.ToJson() ?? throw new ApiException(404, $"no evaluation job '{id}'", "id")))
            .WithName("GetEval").Produces<JsonObject>().Produces<ErrorBody>(404);
        evals.MapDelete("/{id}", (string id, EvalJobRunner runner) => Guard(() => Results.Json(runner.Cancel(id).ToJson())))
            .WithName("CancelEval").Produces<JsonObject>().Produces<ErrorBody>(404).Produces<ErrorBody>(409);

        app.MapPost("/v1/diagnostics/attention-scores", AttentionScores).WithTags("Evaluations").WithName("AttentionScores")
            .Accepts<AttentionScoresRequest>("application/json").Produces<JsonObject>().Produces<ErrorBody>(400).Produces<ErrorBody>(404);
        app.MapPost("/v1/models/{id}/variants", CreateVariant).WithTags("Evaluations").WithName("CreateModelVariant").AddEndpointFilter(RequireJobStore)
            .Accepts<VariantRequest>("application/json").Produces<JsonObject>(201).Produces<ErrorBody>(400).Produces<ErrorBody>(404);
        app.MapDelete("/v1/models/{id}", DeleteVariant).WithTags("Evaluations").WithName("DeleteModelVariant").AddEndpointFilter(RequireJobStore)
            .Produces<JsonObject>().Produces<ErrorBody>(403).Produces<ErrorBody>(404).Produces<ErrorBody>(409);
        app.MapGet("/v1/datasets", (Eval.Datasets.DatasetCatalog catalog) => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(catalog.All.Select(d => (JsonNode)new JsonObject
            {
                ["id"] = d.Id, ["kind"] = d.KindName, ["exists"] = d.Error is null && (File.Exists(d.FullPath) || Directory.Exists(d.FullPath)),
                ["error"] = d.Error,
            }).ToArray()),
        })).WithTags("Evaluations").WithName("ListDatasets").Produces<JsonObject>();
        return app;
    }

    private static ValueTask<object?> RequireJobStore(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        context.HttpContext.RequestServices.GetRequiredService<JobStoreStatus>().EnsureAvailable();
        return next(context);
    }

    /// <summary>Runner refusals as OpenAI error JSON.</summary>
    private static T Guard<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (EvalRequestException e)
        {
            throw new ApiException(e.Status, e.Message, e.Param);
        }
    }

    private static async Task<IResult> Create(HttpContext http, EvalJobRunner runner)
    {
        var r = await RequestBody.ReadAsync<EvalCreateRequest>(http.Request, http.RequestAborted);
        var job = Guard(() => runner.Submit(new EvalRequest(r.Kind, r.Model, r.Dataset, r.Parameters, r.RopeScaling)));
        http.Response.Headers.Location = $"/v1/evals/{job.Id}";
        return Results.Json(job.ToJson(), statusCode: 202);
    }

    private static async Task<IResult> AttentionScores(HttpContext http, EvalJobRunner runner)
    {
        var r = await RequestBody.ReadAsync<AttentionScoresRequest>(http.Request, http.RequestAborted);
        var parameters = (JsonObject?)r.Parameters?.DeepClone() ?? new JsonObject();
        if (r.Text is not null) parameters["text"] = r.Text;
        var request = new EvalRequest("attention-scores", r.Model, r.Dataset, parameters, r.RopeScaling);
        try
        {
            var results = await Task.Run(() => Guard(() => runner.RunNow(request, http.RequestAborted)), http.RequestAborted);
            return Results.Json(results);
        }
        catch (EvalFailedException e)
        {
            throw new ApiException(400, e.Message);
        }
    }

    /// <summary>DELETE /v1/models/{id}: removes a variant here and from the store; configured models are refused (403, as OpenAI refuses base models).</summary>
    private static IResult DeleteVariant(string id, ModelRegistry registry, EvalJobRunner runner)
    {
        try
        {
            registry.RemoveVariant(id);
        }
        catch (KeyNotFoundException e)
        {
            throw new ApiException(404, e.Message, "model", code: "model_not_found");
        }
        catch (InvalidOperationException e)
        {
            bool configured = registry.Find(id)?.BaseModelId is null;
            throw new ApiException(configured ? 403 : 409, e.Message, "model");
        }
        runner.Store.DeleteVariant(id);
        return Results.Json(new JsonObject { ["id"] = id, ["object"] = "model", ["deleted"] = true });
    }

    private static async Task<IResult> CreateVariant(string id, HttpContext http, ModelRegistry registry, EvalJobRunner runner)
    {
        var r = await RequestBody.ReadAsync<VariantRequest>(http.Request, http.RequestAborted);
        if (string.IsNullOrEmpty(r.Id)) throw ApiException.BadParam("id", "'id' (the new model id) is required");
        if (Eval.Models.ModelIds.Problem(r.Id) is { } badId) throw ApiException.BadParam("id", badId);
        var baseModel = registry.Find(id) ?? throw new ApiException(404, $"The model '{id}' does not exist", "model", code: "model_not_found");
        if (!baseModel.IsLoaded) throw new ApiException(503, $"The model '{id}' failed to load: {baseModel.Error}", "model", type: "server_error");
        if (registry.Find(r.Id) is not null) throw ApiException.BadParam("id", $"a model with id '{r.Id}' already exists");
        if ((r.RopeScaling is null) == (r.FromJob is null)) throw ApiException.BadParam("rope_scaling", "give exactly one of 'rope_scaling' and 'from_job'");
        var rope = r.RopeScaling;
        int? window = r.ContextWindow;
        if (r.FromJob is not null)
        {
            var job = runner.Get(r.FromJob) ?? throw new ApiException(404, $"no evaluation job '{r.FromJob}'", "from_job");
            if (job.Kind != "longrope-search" || job.State != EvalStates.Succeeded || LongRopeSearchSuite.Variant(job.Results) is not { } found)
                throw ApiException.BadParam("from_job", $"job '{r.FromJob}' is not a succeeded longrope-search job");
            rope = found.RopeScaling;
            window ??= found.ContextWindow;
        }
        if (window is <= 0) throw ApiException.BadParam("context_window", "'context_window' must be positive");
        ServedModel variant;
        try
        {
            variant = registry.RegisterVariant(id, r.Id, rope!, window);
        }
        catch (Inference.Rope.RopeScalingException e)
        {
            throw ApiException.BadParam("rope_scaling", e.Message);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadParam("id", e.Message);
        }
        try
        {
            runner.Store.SaveVariant(new EvalVariant(r.Id, id, rope!, window, r.FromJob));
        }
        catch (EvalStoreUnavailableException)
        {
            registry.RemoveVariant(r.Id); // not stored: not registered either (other hosts would never see it)
            throw;
        }
        return Results.Json(new JsonObject
        {
            ["id"] = variant.Id, ["object"] = "model", ["base_model"] = id, ["rope_scaling"] = rope!.DeepClone(),
            ["context_window"] = variant.ContextWindowFor(variant.Rope!),
        }, statusCode: 201);
    }
}
