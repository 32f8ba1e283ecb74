using PiServe.Inference.Generation;

namespace PiServe.Api.Models;

/// <summary>Creates the per-model scheduler observer (metrics); the host registers the real one.</summary>
public interface ISchedulerObserverFactory
{
    ISchedulerObserver For(string modelId);
}
