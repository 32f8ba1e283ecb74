using PiServe.Inference.Generation;

namespace PiServe.Api.Configuration;

public sealed class SchedulerSettings
{
    public int MaxWaiting { get; set; } = 64;
    public int MaxBatch { get; set; } = 16;
    public long KvCacheBudgetBytes { get; set; } = 2L << 30;
    public int PrefillChunk { get; set; } = 256;
    /// <summary>Compute threads (0 = all cores).</summary>
    public int Threads { get; set; }

    public SchedulerOptions ToSchedulerOptions() => new()
    {
        MaxWaiting = MaxWaiting, MaxBatch = MaxBatch, KvCacheBudgetBytes = KvCacheBudgetBytes, PrefillChunk = PrefillChunk,
    };
}
