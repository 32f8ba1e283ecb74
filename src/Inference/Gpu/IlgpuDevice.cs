using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace PiServe.Inference.Gpu;

/// <summary>Where a model's forward pass runs (configuration <c>PiServe:Backend</c>).</summary>
public enum BackendKind
{
    /// <summary>The SIMD CPU engine (default).</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through ILGPU's CUDA accelerator.</summary>
    Cuda,
    /// <summary>The same ILGPU kernels on ILGPU's CPU accelerator (CI: the GPU code without a GPU; slow).</summary>
    IlgpuCpu,
}

public static class BackendKinds
{
    public static BackendKind Parse(string? name) => (name ?? "").Trim().ToLowerInvariant() switch
    {
        "" or "cpu" => BackendKind.Cpu,
        "cuda" or "gpu" => BackendKind.Cuda,
        "ilgpu-cpu" => BackendKind.IlgpuCpu,
        _ => throw new ArgumentException($"backend '{name}' is not one of cpu, cuda, ilgpu-cpu"),
    };

    public static string Name(this BackendKind kind) => kind switch
    {
        BackendKind.Cuda => "cuda",
        BackendKind.IlgpuCpu => "ilgpu-cpu",
        _ => "cpu",
    };
}

/// <summary>The configured device cannot be used (no CUDA device, no driver): the model using it fails to load.</summary>
public sealed class DeviceUnavailableException(string message, Exception? inner = null) : InvalidOperationException(message, inner);

/// <summary>
/// Device memory ran out (weights at load, a KV cache or activations under load). An
/// <see cref="OutOfMemoryException"/>, so the scheduler ends the request that hit it with this
/// message and keeps serving the others.
/// </summary>
public sealed class DeviceOutOfMemoryException(string message, Exception? inner = null) : OutOfMemoryException(message, inner);

/// <summary>
/// One ILGPU context and accelerator per backend kind, shared by every model of the process (a GPU
/// holds one context per process), with the kernels compiled once. Allocations go through
/// <see cref="Allocate{T}"/>, which counts the bytes and turns an allocation failure into a
/// <see cref="DeviceOutOfMemoryException"/>.
/// </summary>
public sealed class IlgpuDevice
{
    private static readonly object Gate = new();
    private static readonly Dictionary<BackendKind, IlgpuDevice> Devices = [];
    private long _allocated;

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public BackendKind Kind { get; }
    public IlgpuKernelSet Kernels { get; }
    /// <summary>Threads per group of the 1-D grouped kernels (a power of two).</summary>
    public int GroupSize { get; }
    /// <summary>The GEMM tile: TileX rows × TileY tokens of the output per group of TileX × TileY threads.</summary>
    public int TileX { get; }
    public int TileY { get; }
    /// <summary>Columns per GEMM step staged in shared memory (fewer steps, fewer barriers).</summary>
    public int TileK { get; }
    /// <summary>
    /// What a model's engine locks around its launches: its own object on a GPU (each model has its
    /// stream), one object shared by every model on ILGPU's CPU accelerator, which is not made for
    /// kernels launched from several threads at once (a test run once hit an "Index out of range"
    /// assertion inside a kernel while two models' launches could overlap).
    /// </summary>
    public object LaunchLockFor(object model) => Kind == BackendKind.IlgpuCpu ? _cpuLaunches : model;
    private readonly object _cpuLaunches = new();

    private IlgpuDevice(BackendKind kind, Context context, Accelerator accelerator)
    {
        Kind = kind;
        Context = context;
        Accelerator = accelerator;
        int max = accelerator.MaxNumThreadsPerGroup;
        GroupSize = LargestPowerOfTwo(Math.Min(128, max));
        TileX = Math.Min(16, GroupSize);
        TileY = Math.Max(1, Math.Min(16, max / TileX));
        TileK = kind == BackendKind.Cuda ? 32 : 64;
        Kernels = new IlgpuKernelSet(accelerator);
    }

    private static int LargestPowerOfTwo(int n)
    {
        int p = 1;
        while (p * 2 <= n) p *= 2;
        return p;
    }

    /// <summary>The device for a kind, created on first use; throws <see cref="DeviceUnavailableException"/> when there is none.</summary>
    public static IlgpuDevice Get(BackendKind kind)
    {
        if (kind == BackendKind.Cpu) throw new ArgumentException("the cpu backend has no ILGPU device", nameof(kind));
        lock (Gate)
        {
            if (Devices.TryGetValue(kind, out var d)) return d;
            d = Create(kind);
            Devices[kind] = d;
            return d;
        }
    }

    private static IlgpuDevice Create(BackendKind kind)
    {
        Context? context = null;
        try
        {
            if (kind == BackendKind.IlgpuCpu)
            {
                // Groups of 2 threads on one multiprocessor: ILGPU runs each group thread as an OS thread
                // and a barrier waits for all of them, so on a small shared CI machine groups of 4 ran a
                // golden case ~15x slower than groups of 2 (measured: 16-token score 15.6 s vs 1.1 s).
                // Two threads still exercise every cooperative load, barrier and tree reduction.
                var device = new CPUDevice(2, 1, 1);
                context = Context.Create(b => b.CPU(device).EnableAlgorithms().Optimize(OptimizationLevel.O1));
                return new IlgpuDevice(kind, context, context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel));
            }
            context = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
                throw new DeviceUnavailableException("PiServe:Backend is 'cuda' but no CUDA device was found (no NVIDIA GPU, or its driver library libcuda is not installed)");
            return new IlgpuDevice(kind, context, context.CreateCudaAccelerator(0));
        }
        catch (DeviceUnavailableException)
        {
            context?.Dispose();
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            context?.Dispose();
            throw new DeviceUnavailableException($"PiServe:Backend is '{kind.Name()}' but the device could not be opened: {e.Message}", e);
        }
    }

    public string Name => Accelerator.Name;
    public long MemorySize => Accelerator.MemorySize;
    /// <summary>Bytes PiServe holds on the device (weights, caches, activations).</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocated);

    /// <summary>Free device memory: the driver's figure on CUDA, the device size less our allocations elsewhere.</summary>
    public long FreeBytes => Accelerator is CudaAccelerator cuda ? cuda.GetFreeMemory() : Math.Max(0, MemorySize - AllocatedBytes);

    /// <summary>
    /// Makes this device's context current on the calling thread. A CUDA context is current per
    /// thread, and models are loaded on one thread, decoded on the scheduler's and evaluated on
    /// others: every entry point binds first (a no-op when it already is current).
    /// </summary>
    public void Bind() => Accelerator.Bind();

    /// <summary>A device buffer of count elements; out of memory becomes <see cref="DeviceOutOfMemoryException"/> naming what it was for.</summary>
    public DeviceBuffer<T> Allocate<T>(long count, string what) where T : unmanaged
    {
        Bind();
        long bytes = Math.Max(1, count) * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        try
        {
            var buffer = Accelerator.Allocate1D<T>(Math.Max(1, count));
            Interlocked.Add(ref _allocated, bytes);
            return new DeviceBuffer<T>(this, buffer, bytes);
        }
        catch (Exception e) when (e is OutOfMemoryException or AcceleratorException or CudaException)
        {
            throw new DeviceOutOfMemoryException(
                $"out of device memory on {Name} allocating {what} ({bytes} bytes; PiServe holds {AllocatedBytes} of {MemorySize} bytes)", e);
        }
    }

    internal void Released(long bytes) => Interlocked.Add(ref _allocated, -bytes);
}

/// <summary>A device allocation with its byte count (released from the device's tally on dispose).</summary>
public sealed class DeviceBuffer<T>(IlgpuDevice device, MemoryBuffer1D<T, Stride1D.Dense> buffer, long bytes) : IDisposable where T : unmanaged
{
    private bool _disposed;
    public MemoryBuffer1D<T, Stride1D.Dense> Buffer { get; } = buffer;
    public ArrayView<T> View => Buffer.View;
    public long Length => Buffer.Length;
    public long Bytes { get; } = bytes;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        device.Bind();
        Buffer.Dispose();
        device.Released(Bytes);
    }
}

/// <summary>The compiled kernels of one accelerator, one instance per element type where generic.</summary>
public sealed class IlgpuKernelSet
{
    public IlgpuKernelSet(Accelerator a)
    {
        EmbedF32 = a.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int>(IlgpuKernels.Embed<F32Element>);
        EmbedBf16 = a.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int>(IlgpuKernels.Embed<Bf16Element>);
        EmbedF16 = a.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int>(IlgpuKernels.Embed<F16Element>);
        RmsNorm = a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(IlgpuKernels.RmsNorm);
        GemvF32 = a.LoadKernel<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>(IlgpuKernels.Gemv<F32Element>);
        GemvBf16 = a.LoadKernel<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>(IlgpuKernels.Gemv<Bf16Element>);
        GemvF16 = a.LoadKernel<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>(IlgpuKernels.Gemv<F16Element>);
        GemmF32 = a.LoadKernel<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>(IlgpuKernels.Gemm<F32Element>);
        GemmBf16 = a.LoadKernel<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>(IlgpuKernels.Gemm<Bf16Element>);
        GemmF16 = a.LoadKernel<ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>(IlgpuKernels.Gemm<F16Element>);
        Rope = a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(IlgpuKernels.Rope);
        WriteKvF32 = a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, long, long, int, int, int, int, int>(IlgpuKernels.WriteKv<F32Element>);
        WriteKvBf16 = a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, long, long, int, int, int, int, int>(IlgpuKernels.WriteKv<Bf16Element>);
        WriteKvF16 = a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, long, long, int, int, int, int, int>(IlgpuKernels.WriteKv<F16Element>);
        AttentionF32 = a.LoadKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, AttentionShape>(IlgpuKernels.Attention<F32Element>);
        AttentionBf16 = a.LoadKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, AttentionShape>(IlgpuKernels.Attention<Bf16Element>);
        AttentionF16 = a.LoadKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, AttentionShape>(IlgpuKernels.Attention<F16Element>);
        SwiGlu = a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>>(IlgpuKernels.SwiGlu);
        Add = a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>>(IlgpuKernels.Add);
    }

    public readonly Action<AcceleratorStream, Index1D, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int> EmbedF32, EmbedBf16, EmbedF16;
    public readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> RmsNorm;
    public readonly Action<AcceleratorStream, KernelConfig, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape> GemvF32, GemvBf16, GemvF16, GemmF32, GemmBf16, GemmF16;
    public readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> Rope;
    public readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, long, long, int, int, int, int, int> WriteKvF32, WriteKvBf16, WriteKvF16;
    public readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, AttentionShape> AttentionF32, AttentionBf16, AttentionF16;
    public readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>> SwiGlu, Add;
}
