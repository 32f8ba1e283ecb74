using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace PiServe.Inference.Checkpoints;

/// <summary>One tensor inside a memory-mapped safetensors file, in its stored dtype.</summary>
public sealed unsafe class TensorView(string name, string file, DType dtype, long[] shape, byte* data, long byteLength)
{
    public string Name { get; } = name;
    public string File { get; } = file;
    public DType DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public byte* Data { get; } = data;
    public long ByteLength { get; } = byteLength;
    public long ElementCount => ByteLength / DTypes.SizeOf(DType);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A memory-mapped safetensors file: 8-byte little-endian header length, a JSON header
/// {name: {dtype, shape, data_offsets}}, optional __metadata__, then the raw data. Everything in the
/// header is validated against the file before any tensor is handed out, because a bad offset in a
/// memory-mapped file would otherwise become an access violation deep inside a kernel.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);

    /// <summary>No tensor can be larger than this (2^56 bytes = 64 PiB); keeps byte counts far from long overflow.</summary>
    private const long MaxTensorBytes = 1L << 56;

    public string Path { get; }
    public string FileName { get; }
    /// <summary>The real path that is mapped: <see cref="Path"/> with every symbolic link resolved.</summary>
    public string RealPath { get; }
    public IReadOnlyDictionary<string, TensorView> Tensors => _tensors;

    /// <summary>
    /// Maps the file at <paramref name="path"/>. A symbolic link (chains too) is followed: the real
    /// target is measured and mapped, and errors name the file by <paramref name="path"/>'s own name.
    /// With <paramref name="confineTo"/>, a target outside that root is refused.
    /// </summary>
    public SafetensorsFile(string path, ConfinementRoot? confineTo = null)
    {
        Path = path;
        FileName = System.IO.Path.GetFileName(path);
        string real = ConfinedPath.ResolveFile(path, FileName, confineTo)
            ?? throw new CheckpointFormatException(FileName, null, $"file not found ({path})");
        RealPath = real;
        // The link's own size is not the file's: FileInfo on the resolved target.
        long fileLength = new FileInfo(real).Length;
        if (fileLength < 8)
            throw new CheckpointFormatException(FileName, "header length", $"file is truncated: {fileLength} bytes, the 8-byte header length does not fit");

        _map = MemoryMappedFile.CreateFromFile(real, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        try
        {
            ParseHeader(fileLength);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private void ParseHeader(long fileLength)
    {
        ulong headerLength = *(ulong*)_base; // safetensors is little-endian, as is every machine we run on
        if (headerLength > (ulong)(fileLength - 8))
            throw new CheckpointFormatException(FileName, "header length",
                $"header length {headerLength} runs past the end of the file ({fileLength} bytes): the file is truncated or not safetensors");
        if (headerLength > 100_000_000)
            throw new CheckpointFormatException(FileName, "header length", $"header length {headerLength} is implausibly large");

        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        // JsonDocument checks strings lazily: invalid UTF-8 inside a name would surface later as an
        // InvalidOperationException, so the header is checked as a whole first.
        if (!System.Text.Unicode.Utf8.IsValid(new ReadOnlySpan<byte>(_base + 8, (int)headerLength)))
            throw new CheckpointFormatException(FileName, "header", "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(new ReadOnlySpan<byte>(_base + 8, (int)headerLength).ToArray()));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(FileName, "header", $"header is not valid JSON: {e.Message}");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(FileName, "header", "header must be a JSON object");

            var spans = new List<(long Begin, long End, string Name)>();
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                var t = entry.Value;
                string field = $"tensor '{entry.Name}'";
                if (t.ValueKind != JsonValueKind.Object)
                    throw new CheckpointFormatException(FileName, field, "entry must be an object with dtype, shape and data_offsets");

                if (!t.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(FileName, field + ".dtype", "missing or not a string");
                string dtypeText = dtypeEl.GetString()!;
                if (!DTypes.KnownSafetensorsDtypes.Contains(dtypeText))
                    throw new CheckpointFormatException(FileName, field + ".dtype", $"unknown dtype '{dtypeText}'");
                var dtype = DTypes.FromSafetensors(dtypeText)
                    ?? throw new CheckpointFormatException(FileName, field + ".dtype", $"unsupported dtype '{dtypeText}' (PiServe computes with F32, F16 and BF16 weights)");

                if (!t.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
                    throw new CheckpointFormatException(FileName, field + ".shape", "missing or not an array");
                var shape = new long[shapeEl.GetArrayLength()];
                int k = 0;
                long elements = 1;
                foreach (var d in shapeEl.EnumerateArray())
                {
                    if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                        throw new CheckpointFormatException(FileName, field + ".shape", "dimensions must be non-negative integers");
                    shape[k++] = dim;
                    // A shape such as [2^40, 2^40] has more bytes than any file: refuse it before it overflows.
                    if (dim != 0 && elements > MaxTensorBytes / dim)
                        throw new CheckpointFormatException(FileName, field + ".shape",
                            $"[{string.Join(", ", shapeEl.EnumerateArray().Select(x => x.GetRawText()))}] has more elements than any file can hold");
                    elements *= dim;
                }

                if (!t.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2
                    || offEl[0].ValueKind != JsonValueKind.Number || offEl[1].ValueKind != JsonValueKind.Number
                    || !offEl[0].TryGetInt64(out long begin) || !offEl[1].TryGetInt64(out long end))
                    throw new CheckpointFormatException(FileName, field + ".data_offsets", "must be an array of two integers [begin, end]");
                if (begin < 0 || end < begin)
                    throw new CheckpointFormatException(FileName, field + ".data_offsets", $"[{begin}, {end}] is not a valid range");
                if (end > dataLength)
                    throw new CheckpointFormatException(FileName, field + ".data_offsets",
                        $"[{begin}, {end}] lies outside the data section ({dataLength} bytes): the file is truncated or the header is wrong");
                if (elements > MaxTensorBytes / DTypes.SizeOf(dtype))
                    throw new CheckpointFormatException(FileName, field + ".shape", $"[{string.Join(", ", shape)}] × {dtypeText} is larger than any file can hold");
                long expected = elements * DTypes.SizeOf(dtype);
                if (end - begin != expected)
                    throw new CheckpointFormatException(FileName, field,
                        $"byte size {end - begin} does not match shape [{string.Join(", ", shape)}] × {dtypeText} ({expected} bytes)");

                spans.Add((begin, end, entry.Name));
                _tensors[entry.Name] = new TensorView(entry.Name, FileName, dtype, shape, _base + dataStart + begin, end - begin);
            }

            spans.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            for (int i = 1; i < spans.Count; i++)
                if (spans[i].Begin < spans[i - 1].End)
                    throw new CheckpointFormatException(FileName, $"tensor '{spans[i].Name}'.data_offsets",
                        $"overlaps tensor '{spans[i - 1].Name}' ([{spans[i].Begin}, {spans[i].End}] vs [{spans[i - 1].Begin}, {spans[i - 1].End}])");
        }
    }

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
