using System.Threading.Channels;
using PiServe.Inference.Generation;

namespace PiServe.Api.OpenAi;

/// <summary>
/// A completion as the endpoints and the hub consume it: the scheduler's events for one choice (or the n
/// choices of a request, merged as they arrive) read as <see cref="Piece"/>s, ending with a finish or an
/// error, or when the caller is cancelled. The HTTP endpoints turn pieces into JSON or SSE
/// (<see cref="Sse"/>), the SignalR hub into token events.
/// </summary>
public static class CompletionStream
{
    /// <summary>Usage over the n choices of a request: the prompt counted once, the completion tokens of every choice.</summary>
    public static Usage? Sum(Usage? total, Usage? choice) => (total, choice) switch
    {
        (_, null) => total,
        (null, _) => choice,
        _ => new Usage(total.PromptTokens, total.CompletionTokens + choice.CompletionTokens, total.TotalTokens + choice.CompletionTokens),
    };

    /// <summary>
    /// The pieces of several choices as they come, each with its choice index; ends when every choice
    /// has ended, or at the first error (reported as that choice's piece).
    /// </summary>
    public static async IAsyncEnumerable<(int Index, Piece Piece)> ReadAllAsync(IReadOnlyList<ChannelReader<GenerationEvent>> choices,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        if (choices.Count == 1)
        {
            await foreach (var piece in ReadAsync(choices[0], ct)) yield return (0, piece);
            yield break;
        }
        var merged = Channel.CreateUnbounded<(int, Piece)>(new UnboundedChannelOptions { SingleReader = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = stop.Token;
        var pumps = choices.Select((reader, index) => Task.Run(async () =>
        {
            await foreach (var piece in ReadAsync(reader, token)) await merged.Writer.WriteAsync((index, piece), CancellationToken.None);
        })).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(_ => merged.Writer.TryComplete(), TaskScheduler.Default);
        try
        {
            await foreach (var item in merged.Reader.ReadAllAsync(CancellationToken.None))
            {
                yield return item;
                if (item.Item2.Error is not null) yield break;
            }
        }
        finally
        {
            stop.Cancel(); // stops the pumps when the consumer leaves early
        }
    }

    /// <summary>One step of a completion as the endpoints consume it.</summary>
    public sealed record Piece(string Text, TokenEvent? Token, PromptLogprobsEvent? Prompt, string? FinishReason, Usage? Usage, string? Error);

    /// <summary>
    /// The scheduler's events as pieces; the prompt log-probs event (echo) is folded into the first
    /// piece. Ends when the sequence finishes or the caller is cancelled.
    /// </summary>
    public static async IAsyncEnumerable<Piece> ReadAsync(ChannelReader<GenerationEvent> events,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        PromptLogprobsEvent? prompt = null;
        while (true)
        {
            GenerationEvent e;
            try
            {
                if (!await events.WaitToReadAsync(ct)) yield break;
                if (!events.TryRead(out e!)) continue;
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
            switch (e)
            {
                case PromptLogprobsEvent pe:
                    prompt = pe;
                    break;
                case TokenEvent te:
                    yield return new Piece(te.Text, te, prompt, null, null, null);
                    prompt = null;
                    break;
                case FinishEvent fe:
                    yield return new Piece(fe.TrailingText, null, prompt, fe.FinishReason,
                        new Usage(fe.PromptTokens, fe.CompletionTokens, fe.PromptTokens + fe.CompletionTokens), null);
                    yield break;
                case ErrorEvent err:
                    yield return new Piece("", null, prompt, null, null, err.Message);
                    yield break;
            }
        }
    }
}
