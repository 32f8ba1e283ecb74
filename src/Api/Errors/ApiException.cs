namespace PiServe.Api.Errors;

/// <summary>Thrown by handlers for a client error; rendered as OpenAI error JSON with the status code.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? type = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    public string? Code { get; } = code;
    public TimeSpan? RetryAfter { get; init; }

    public ErrorBody Body => new(new ErrorDetail(Message, Type, Param, Code));

    public static ApiException BadParam(string param, string message) => new(400, message, param);
}
