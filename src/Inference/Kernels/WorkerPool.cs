using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace PiServe.Inference.Kernels;

/// <summary>
/// One parallel region: <see cref="Run"/>(part, parts) does the part-th of parts shares. The share is
/// chosen by the work itself (a static partition, e.g. 16-row blocks so no two threads write one
/// cache line of the output). Subclasses are reusable objects whose fields describe the operation,
/// so starting a region allocates nothing (no closure, no delegate).
/// </summary>
public abstract class ParallelWork
{
    public abstract void Run(int part, int parts);

    /// <summary>The part-th of parts contiguous, balanced slices of [0, count).</summary>
    public static (int Begin, int End) Slice(int count, int part, int parts) =>
        ((int)((long)count * part / parts), (int)((long)count * (part + 1) / parts));
}

/// <summary>
/// Persistent threads for the CPU backend's parallel regions. A decode step is ~60 short regions
/// (about 20–100 µs each for the 134M shape); Parallel.For costs a few µs and allocations per
/// region and wakes thread-pool threads that may be asleep. Here N − 1 dedicated workers spin on a
/// generation counter between regions (then block after <see cref="SpinTime"/> idle), the calling
/// thread runs part 0 itself, and the region ends when a shared countdown reaches zero.
///
/// <para>Several threads may call into one pool at once (the scheduler loop and evaluation job
/// workers share a model's backend, and pools are shared per thread count). Callers are
/// <b>serialised</b>: a lock is held for a whole region. The alternative, running a region inline
/// on the caller when the pool is busy, would put more runnable threads than cores on the machine
/// (the pool is sized to the cores), and a spin barrier waiting for a descheduled participant is
/// the worst case of oversubscription; a region is tens of µs to a few ms, so waiting for one is
/// cheap, and the waiting caller blocks instead of burning a core.</para>
///
/// <para>A region started from inside a region (a worker, or the caller while it holds the pool)
/// runs inline, so nesting can never deadlock.</para>
/// </summary>
public sealed class WorkerPool
{
    private static readonly ConcurrentDictionary<int, WorkerPool> Pools = new();

    /// <summary>The process-wide pool of <paramref name="threads"/> threads (the caller included), created on first use.</summary>
    public static WorkerPool Shared(int threads) => Pools.GetOrAdd(Math.Max(1, threads), t => new WorkerPool(t));

    /// <summary>How long an idle worker spins before it blocks: longer than the gaps between regions of a decode step or between steps.</summary>
    public static readonly TimeSpan SpinTime = TimeSpan.FromMilliseconds(2);
    private static readonly long SpinTicks = (long)(SpinTime.TotalSeconds * Stopwatch.Frequency);

    [ThreadStatic] private static bool t_inRegion;

    private readonly Lock _callers = new();
    private readonly object _sleep = new();
    private readonly int _workers;
    private readonly Thread[] _threads;
    private Signals _signals; // generation and countdown, each on its own cache line
    private ParallelWork? _work;
    private int _parts;
    private Exception? _error;
    private int _sleeping;
    /// <summary>Per worker, bytes the worker thread had allocated after its last region (diagnostics for the allocation test).</summary>
    private readonly PaddedLong[] _allocated;

    private WorkerPool(int threads)
    {
        Threads = threads;
        _workers = threads - 1;
        _allocated = new PaddedLong[_workers];
        _threads = new Thread[_workers];
        for (int i = 0; i < _workers; i++)
        {
            int part = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(part)) { IsBackground = true, Name = $"piserve-cpu-{part}/{threads}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads taking part in a region, the caller included.</summary>
    public int Threads { get; }

    /// <summary>
    /// Managed bytes allocated so far by the worker threads, as of their last finished region. A
    /// steady-state decode step must not change it (tested).
    /// </summary>
    public long WorkerAllocatedBytes
    {
        get
        {
            long sum = 0;
            for (int i = 0; i < _allocated.Length; i++) sum += Volatile.Read(ref _allocated[i].Value);
            return sum;
        }
    }

    /// <summary>Runs work.Run(p, Threads) for every p, part 0 on the calling thread; returns when all parts are done.</summary>
    public void Run(ParallelWork work)
    {
        if (_workers == 0 || t_inRegion)
        {
            work.Run(0, 1);
            return;
        }
        using (_callers.EnterScope())
        {
            t_inRegion = true;
            try
            {
                _work = work;
                _parts = Threads;
                _error = null;
                Volatile.Write(ref _signals.Pending, _workers);
                Interlocked.Increment(ref _signals.Generation); // full fence: publishes the fields above
                if (Volatile.Read(ref _sleeping) > 0)
                    lock (_sleep) Monitor.PulseAll(_sleep);

                Exception? mine = null;
                try { work.Run(0, Threads); }
                catch (Exception e) { mine = e; }

                // Always wait: the workers must be done with this region before the next one replaces it.
                var spin = new SpinWait();
                while (Volatile.Read(ref _signals.Pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
                _work = null;
                if ((mine ?? _error) is { } error) throw new AggregateException(error);
            }
            finally
            {
                t_inRegion = false;
            }
        }
    }

    private void WorkerLoop(int part)
    {
        t_inRegion = true;
        int seen = 0;
        while (true)
        {
            // Spin (pause, then yield) for a while, then block until the next region.
            if (Volatile.Read(ref _signals.Generation) == seen)
            {
                long until = Stopwatch.GetTimestamp() + SpinTicks;
                var spin = new SpinWait();
                while (Volatile.Read(ref _signals.Generation) == seen)
                {
                    if ((spin.Count & 63) == 63 && Stopwatch.GetTimestamp() > until)
                    {
                        lock (_sleep)
                        {
                            Interlocked.Increment(ref _sleeping); // full fence; the caller reads _sleeping after bumping the generation
                            while (Volatile.Read(ref _signals.Generation) == seen) Monitor.Wait(_sleep);
                            Interlocked.Decrement(ref _sleeping);
                        }
                        break;
                    }
                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }
            seen = Volatile.Read(ref _signals.Generation);
            try
            {
                _work!.Run(part, _parts);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            Volatile.Write(ref _allocated[part - 1].Value, GC.GetAllocatedBytesForCurrentThread());
            Interlocked.Decrement(ref _signals.Pending);
        }
    }

    [StructLayout(LayoutKind.Explicit, Size = 192)]
    private struct Signals
    {
        [FieldOffset(64)] public int Generation;
        [FieldOffset(128)] public int Pending;
    }

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct PaddedLong
    {
        [FieldOffset(64)] public long Value;
    }
}
