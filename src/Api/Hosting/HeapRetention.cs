using System.Runtime.InteropServices;

namespace PiServe.Api.Hosting;

/// <summary>
/// Keeps memory the server frees in glibc's heap for the next request instead of handing it back to
/// the kernel. KV caches (megabytes per request) and prefix-cache blocks are native allocations; by
/// default glibc maps each one above 128 KiB fresh with mmap and unmaps it when freed, so every request
/// and every cached block pays the kernel's page faults and page zeroing again (on a 2-core Zen 4: a
/// burst of 16 prompts publishing 70 MB of prefix blocks spent ~40 ms on it between two decode steps,
/// against ~6 ms for the copy itself into reused memory). Allocations up to 32 MiB (glibc's
/// largest mmap threshold) come from the heap, and the heap's free top is kept up to 1 GiB; the
/// resident size then stays at its peak, as with llama-server's and vLLM's preallocated KV pools.
/// Linux with glibc only; elsewhere (musl, other OSes) nothing changes.
/// </summary>
public static class HeapRetention
{
    private const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

    /// <summary>What was set, or why nothing was (for the startup log).</summary>
    public static string Status { get; private set; } = "not configured";

    public static void Configure()
    {
        if (!OperatingSystem.IsLinux())
        {
            Status = "unchanged (not Linux)";
            return;
        }
        try
        {
            bool ok = Mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 & Mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
            Status = ok ? "freed native memory up to 32 MiB per block stays in the heap for reuse (mallopt)" : "unchanged (mallopt refused the settings)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Status = "unchanged (no glibc mallopt)";
        }
    }
}
