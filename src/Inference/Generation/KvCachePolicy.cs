namespace PiServe.Inference.Generation;

/// <summary>
/// What to do with the KV cache when the rope parameters in force change as the sequence grows
/// (dynamic NTK past max_position_embeddings, LongRoPE past original_max_position_embeddings).
/// </summary>
public enum KvCachePolicy
{
    /// <summary>Re-prefill the whole sequence whenever the parameters change: cached decoding equals a full recompute.</summary>
    Exact,
    /// <summary>Fix the parameters for the request from prompt + max_tokens: one prefill, no rebuilds; not per-step semantics.</summary>
    Planned,
    /// <summary>Keep the stale cache as transformers does (transformers#25104): each new token uses the parameters for its length.</summary>
    Hf,
}
