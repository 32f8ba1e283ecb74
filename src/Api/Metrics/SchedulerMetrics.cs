using PiServe.Api.Models;
using PiServe.Inference.Generation;

namespace PiServe.Api.Metrics;

/// <summary>Turns each model's scheduler events into the piserve_* request, latency, token, KV and prefix-cache metrics.</summary>
public sealed class SchedulerMetrics(PiServeMetrics metrics) : ISchedulerObserverFactory
{
    public ISchedulerObserver For(string modelId) => new Observer(metrics, modelId);

    private sealed class Observer(PiServeMetrics m, string model) : ISchedulerObserver
    {
        public void Rejected(string reason) => m.RequestRejected(model, reason, 0);
        public void Queued() => m.RequestQueued(model);

        public void Abandoned(double queueSeconds)
        {
            m.RequestDequeued(model, queueSeconds);
            m.RequestRejected(model, PiServeMetrics.FinishReasons.Abort, queueSeconds);
        }

        public void Started(double queueSeconds)
        {
            m.RequestDequeued(model, queueSeconds);
            m.RequestStarted(model);
        }

        public void FirstToken(double secondsSinceSubmit) => m.FirstToken(model, secondsSinceSubmit);
        public void Token(double secondsSincePreviousToken) => m.TokenGenerated(model, secondsSincePreviousToken);

        public void Finished(string finishReason, double seconds, int promptTokens, int completionTokens) =>
            m.RequestFinished(model, finishReason == "cancelled" ? PiServeMetrics.FinishReasons.Abort : finishReason, seconds, promptTokens, completionTokens);

        public void KvCache(long usedBytes, long capacityBytes) => m.SetKvCache(model, usedBytes, capacityBytes);
        public void PrefixCacheLookup(int promptTokens, int cachedTokens) => m.PrefixCacheLookup(model, promptTokens, cachedTokens);
        public void PrefixCache(int blocks, long bytes) => m.SetPrefixCache(model, blocks, bytes);
    }
}
