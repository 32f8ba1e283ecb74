using System.Text;
using System.Text.Json.Nodes;

namespace PiServe.Inference.Checkpoints;

/// <summary>Writes safetensors files (for generated benchmark checkpoints and test fixtures).</summary>
public static class SafetensorsWriter
{
    public sealed record Tensor(string Name, DType DType, long[] Shape, byte[] Data);

    public static void Write(string path, IEnumerable<Tensor> tensors)
    {
        var list = tensors.ToList();
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
        long offset = 0;
        foreach (var t in list)
        {
            header[t.Name] = new JsonObject
            {
                ["dtype"] = DTypes.ToSafetensors(t.DType),
                ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + t.Data.Length),
            };
            offset += t.Data.Length;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (headerBytes.Length + 7) / 8 * 8; // the format recommends 8-byte alignment of the data
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((ulong)padded));
        f.Write(headerBytes);
        for (int i = headerBytes.Length; i < padded; i++) f.WriteByte((byte)' ');
        foreach (var t in list) f.Write(t.Data);
    }

    /// <summary>Encodes float32 values in a stored dtype (bf16 with round-to-nearest-even).</summary>
    public static byte[] Encode(ReadOnlySpan<float> values, DType dtype)
    {
        var bytes = new byte[values.Length * DTypes.SizeOf(dtype)];
        for (int i = 0; i < values.Length; i++)
        {
            switch (dtype)
            {
                case DType.F32:
                    BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), values[i]);
                    break;
                case DType.F16:
                    BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), (Half)values[i]);
                    break;
                default:
                    BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), DTypes.ToBf16(values[i]));
                    break;
            }
        }
        return bytes;
    }
}
