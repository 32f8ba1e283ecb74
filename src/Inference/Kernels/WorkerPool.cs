using System.Collections.Concurrent;
using System.Diagnostics;

namespace PiServe.Inference.Kernels;

/// <summary>
/// A work item source for <see cref="WorkerPool"/>: Run(i) for i in [0, count). Implementations are
/// reusable objects whose fields describe one operation (no closure is allocated per call).
/// </summary>
public abstract class ParallelJob
{
    public abstract void Run(int item);
}

/// <summary>
/// Persistent threads for the parallel regions of the CPU backend. A decode step is ~100 short
/// regions (one per matrix); Parallel.For's fork/join and its delegate allocation cost a visible
/// share of each. Here the calling thread publishes a job, the workers (spinning for a while after
/// each job, then blocking) take items from a shared counter alongside it, and the caller waits
/// until every worker has checked in.
///
/// One job runs at a time. Several threads may share a pool (the scheduler loop and evaluation
/// workers use the same model); a caller that finds it busy gets false from <see cref="TryRun"/>
/// and runs its job another way, rather than queueing behind a whole other forward pass.
/// Pools are shared per thread count (<see cref="For"/>), so models loaded side by side do not
/// multiply threads.
/// </summary>
public sealed class WorkerPool
{
    private static readonly ConcurrentDictionary<int, WorkerPool> Pools = new();

    /// <summary>The shared pool running jobs on <paramref name="threads"/> threads (the caller included).</summary>
    public static WorkerPool For(int threads) => Pools.GetOrAdd(threads, t => new WorkerPool(t));

    /// <summary>How long an idle worker spins before it blocks: longer than the gaps between a decode step's regions.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 1000; // 1 ms

    private readonly object _caller = new();
    private readonly object _sleep = new();
    private readonly int _workers;
    private ParallelJob? _job;
    private int _count;
    private int _next;
    private int _checkedIn;
    private int _generation;
    private int _sleeping;
    private Exception? _error;

    public int Threads => _workers + 1;

    private WorkerPool(int threads)
    {
        _workers = Math.Max(0, threads - 1);
        for (int i = 0; i < _workers; i++)
            new Thread(WorkerLoop) { IsBackground = true, Name = $"piserve-worker-{threads}-{i}" }.Start();
    }

    /// <summary>Runs job.Run(0..count-1) on the pool and the calling thread; false (nothing run) if the pool is busy.</summary>
    public bool TryRun(ParallelJob job, int count)
    {
        if (!Monitor.TryEnter(_caller)) return false;
        try
        {
            _job = job;
            _count = count;
            _next = 0;
            _checkedIn = 0;
            _error = null;
            Interlocked.Increment(ref _generation); // publishes the fields above to the workers
            if (Volatile.Read(ref _sleeping) > 0)
                lock (_sleep) Monitor.PulseAll(_sleep);
            try
            {
                Drain(job, count);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            // Always wait: the workers must be done with this job before the next one replaces it.
            var spin = new SpinWait();
            while (Volatile.Read(ref _checkedIn) < _workers) spin.SpinOnce(sleep1Threshold: -1);
            _job = null;
            if (_error is { } error) throw new AggregateException(error);
            return true;
        }
        finally
        {
            Monitor.Exit(_caller);
        }
    }

    private void Drain(ParallelJob job, int count)
    {
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < count)
            job.Run(i);
    }

    private void WorkerLoop()
    {
        int seen = 0;
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + SpinTicks;
            var spin = new SpinWait();
            while (Volatile.Read(ref _generation) == seen)
            {
                if (Stopwatch.GetTimestamp() < spinUntil)
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                    continue;
                }
                lock (_sleep)
                {
                    Interlocked.Increment(ref _sleeping);
                    // Re-check under the lock: the caller pulses under it after bumping the generation.
                    while (Volatile.Read(ref _generation) == seen) Monitor.Wait(_sleep);
                    Interlocked.Decrement(ref _sleeping);
                }
            }
            seen = Volatile.Read(ref _generation);
            var job = _job!;
            try
            {
                Drain(job, _count);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            Interlocked.Increment(ref _checkedIn);
        }
    }
}
