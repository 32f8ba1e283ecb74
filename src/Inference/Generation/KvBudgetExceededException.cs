namespace PiServe.Inference.Generation;

/// <summary>The request can never fit the KV-cache budget (HTTP 413).</summary>
public sealed class KvBudgetExceededException(string message) : Exception(message);
