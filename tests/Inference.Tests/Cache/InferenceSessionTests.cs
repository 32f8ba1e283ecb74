using PiServe.Inference.Checkpoints;
using System.Text.Json.Nodes;
using PiServe.Inference.Cache;
using PiServe.Inference.Generation;

namespace PiServe.Inference.Tests.Cache;

public class InferenceSessionTests
{
    private static readonly Inference.Model.LlamaModel Model = GoldenFixtures.Model("llama-default-f32");

    /// <summary>A LongRoPE override switching from short to long factors past 128 tokens.</summary>
    private static Inference.Rope.RopeScaling LongRope() => Model.ResolveRope(new JsonObject
    {
        ["rope_type"] = "longrope", ["original_max_position_embeddings"] = 128,
        ["short_factor"] = new JsonArray(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        ["long_factor"] = new JsonArray(1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0),
    });

    [Fact]
    public void KvBytesAreAccountedExactly()
    {
        var c = Model.Config; // 2 layers, 2 kv heads × 16 dims
        using var session = new InferenceSession(Model);
        session.Prefill([5, 6, 7, 8, 9]);
        Assert.Equal(2L * 2 * 2 * 16 * 4, session.Cache.BytesPerToken);
        Assert.Equal(2L * c.NumLayers * c.NumKvHeads * c.HeadDim * sizeof(float), session.Cache.BytesPerToken);
        Assert.Equal(5 * session.Cache.BytesPerToken, session.Cache.UsedBytes);
        Assert.True(session.Cache.AllocatedBytes >= session.Cache.UsedBytes);
    }

    [Fact]
    public void DynamicNtkRebuildsAtEveryStepPastL()
    {
        // L = 512: a 505-token prompt and 12 generated tokens append up to length 516; lengths
        // 513..516 each bring a new base, so four rebuilds.
        var rope = Model.ResolveRope(new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0 });
        var prompt = Enumerable.Range(0, 505).Select(i => 3 + i * 7 % 250).ToArray();
        var exact = GreedyGenerator.Generate(Model, prompt, 12, KvCachePolicy.Exact, rope);
        Assert.Equal(4, exact.Rebuilds);
        Assert.Equal(GreedyGenerator.GenerateWithoutCache(Model, prompt, 12, rope).Tokens, exact.Tokens);
    }

    [Fact]
    public void LongRopeRebuildsOnceAtTheSwitch()
    {
        var rope = LongRope();
        var prompt = Enumerable.Range(0, 120).Select(i => 3 + i * 11 % 250).ToArray();
        using var session = new InferenceSession(Model, rope);
        var logits = session.Prefill(prompt);
        Assert.Equal("short", session.Regime!.Regime);
        for (int i = 0; i < 20; i++) logits = session.Append(GreedyGenerator.ArgMax(logits));
        Assert.Equal(1, session.RebuildCount);
        Assert.Equal("long", session.Regime!.Regime);
        Assert.Equal(140, session.Cache.Length);
    }

    [Fact]
    public void PlannedUsesTheFinalRegimeFromTheStartAndNeverRebuilds()
    {
        var rope = LongRope();
        using var session = new InferenceSession(Model, rope, KvCachePolicy.Planned, plannedLength: 140);
        session.Prefill(Enumerable.Range(3, 120).ToArray());
        Assert.Equal("long", session.Regime!.Regime);
        session.Append(7);
        Assert.Equal(0, session.RebuildCount);
    }

    [Fact]
    public void ChunkedPrefillEqualsOneShotPrefill()
    {
        var prompt = Enumerable.Range(0, 300).Select(i => 3 + i * 13 % 250).ToArray();
        using var oneShot = new InferenceSession(Model, prefillChunk: 1024);
        using var chunked = new InferenceSession(Model, prefillChunk: 7);
        var a = oneShot.Prefill(prompt).ToArray();
        var b = chunked.Prefill(prompt).ToArray();
        Assert.Equal(a, b);
    }

    [Fact]
    public void BatchedDecodeEqualsOneSequenceAtATime()
    {
        // Sequences of different lengths and regimes (one crosses LongRoPE's switch and is rebuilt
        // on its own) decoded together produce exactly the logits of decoding each alone.
        var longrope = LongRope();
        int[][] prompts = [[5, 6, 7], Enumerable.Range(3, 40).ToArray(), Enumerable.Range(10, 127).ToArray()];
        var ropes = new[] { Model.Rope, Model.Rope, longrope };
        var batched = prompts.Select((p, i) => new InferenceSession(Model, ropes[i])).ToList();
        var alone = prompts.Select((p, i) => new InferenceSession(Model, ropes[i])).ToList();
        using var scratch = new Inference.Model.ForwardScratch(Model.Config);
        var logitScratch = new float[3 * Model.Config.VocabSize];
        for (int i = 0; i < 3; i++) { batched[i].Prefill(prompts[i]); alone[i].Prefill(prompts[i]); }
        for (int step = 0; step < 5; step++)
        {
            var next = batched.Select(s => GreedyGenerator.ArgMax(s.Logits)).ToArray();
            InferenceSession.AppendBatch(batched, next, scratch, logitScratch);
            for (int i = 0; i < 3; i++)
            {
                alone[i].Append(next[i]);
                Assert.Equal(alone[i].Logits.ToArray(), batched[i].Logits.ToArray());
            }
        }
        Assert.Equal(1, batched[2].RebuildCount);
        foreach (var s in batched.Concat(alone)) s.Dispose();
    }
}

/// <summary>The batched decode of the newer families (fused, biased, q/k-normed, per-layer windows) equals decoding alone.</summary>
public class FamilyBatchedDecodeTests
{
    [Theory]
    [InlineData("phi3-longrope-bf16")]
    [InlineData("qwen2-yarn-bf16")]
    [InlineData("qwen2-swa-f32")]
    [InlineData("qwen3-yarn-bf16")]
    public void BatchedDecodeEqualsOneSequenceAtATime(string fixture)
    {
        using var model = Inference.Model.LlamaModel.Load(GoldenFixtures.ModelDir(fixture));
        // Lengths on both sides of the fixtures' original windows (64 / 128) and sliding window (32).
        int[][] prompts = [[5, 6, 7], Enumerable.Range(3, 40).ToArray(), Enumerable.Range(10, 130).Select(t => t % 300 + 3).ToArray()];
        var batched = prompts.Select(_ => new InferenceSession(model)).ToList();
        var alone = prompts.Select(_ => new InferenceSession(model)).ToList();
        using var scratch = new Inference.Model.ForwardScratch(model.Config);
        var logitScratch = new float[3 * model.Config.VocabSize];
        for (int i = 0; i < 3; i++) { batched[i].Prefill(prompts[i]); alone[i].Prefill(prompts[i]); }
        for (int step = 0; step < 6; step++)
        {
            var next = batched.Select(s => GreedyGenerator.ArgMax(s.Logits)).ToArray();
            InferenceSession.AppendBatch(batched, next, scratch, logitScratch);
            for (int i = 0; i < 3; i++)
            {
                alone[i].Append(next[i]);
                Assert.Equal(alone[i].Logits.ToArray(), batched[i].Logits.ToArray());
            }
        }
        foreach (var s in batched.Concat(alone)) s.Dispose();
    }
}

public unsafe class KvCacheElementTypeTests
{
    [Theory]
    [InlineData(DType.F32, 4)]
    [InlineData(DType.F16, 2)]
    [InlineData(DType.BF16, 2)]
    public void StoresRoundedValuesThatSurviveGrowth(DType type, int elementSize)
    {
        using var cache = new KvCache(layers: 2, kvHeads: 3, headDim: 20, initialCapacity: 2, elementType: type);
        Assert.Equal(2L * 2 * 3 * 20 * elementSize, cache.BytesPerToken);
        var rng = new Random(5);
        var keys = new float[5, 3, 20];
        var key = new float[20];
        var value = new float[20];
        for (int pos = 0; pos < 5; pos++)
        {
            cache.EnsureCapacity(pos + 1); // grows 2 → 4 → 8 with positions already written
            for (int h = 0; h < 3; h++)
            {
                for (int i = 0; i < 20; i++) { key[i] = keys[pos, h, i] = (float)(rng.NextDouble() * 200 - 100); value[i] = -key[i]; }
                fixed (float* k = key, v = value) cache.Write(1, h, pos, k, v);
            }
            cache.Length = pos + 1;
        }
        for (int pos = 0; pos < 5; pos++)
            for (int h = 0; h < 3; h++)
                for (int i = 0; i < 20; i++)
                {
                    float x = keys[pos, h, i];
                    float expected = type switch
                    {
                        DType.F32 => x,
                        DType.F16 => (float)(Half)x,
                        _ => (float)(BFloat16Reference(x)),
                    };
                    Assert.Equal(expected, cache.Key(1, h, pos, i));
                    Assert.Equal(-expected, cache.Value(1, h, pos, i));
                }
    }

    /// <summary>Round to nearest even at bit 16, computed through double arithmetic instead of bit tricks.</summary>
    private static float BFloat16Reference(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        float down = BitConverter.UInt32BitsToSingle(u & 0xFFFF0000), up = BitConverter.UInt32BitsToSingle((u & 0xFFFF0000) + 0x10000);
        double dd = Math.Abs((double)x - down), du = Math.Abs((double)up - x);
        if (dd < du) return down;
        if (du < dd) return up;
        return ((u >> 16) & 1) == 0 ? down : up;
    }

    [Fact]
    public void UnknownElementTypesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => KvCache.ParseElementType("int8"));
        Assert.Equal(DType.BF16, KvCache.ParseElementType("bfloat16"));
    }
}
