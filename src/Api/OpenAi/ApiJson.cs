using System.Text.Json;
using System.Text.Json.Serialization;

namespace PiServe.Api.OpenAi;

/// <summary>How responses are serialized: every property written, nulls included, as OpenAI's responses do.</summary>
public static class ApiJson
{
    public static readonly JsonSerializerOptions Options = new() { DefaultIgnoreCondition = JsonIgnoreCondition.Never };
}
