namespace PiServe.Eval.Models;

/// <summary>
/// The one rule for model ids, configured models and variants alike: 1–128 characters of ASCII
/// letters, digits and . _ - :, starting with a letter or digit. Ids travel in URL paths
/// (/v1/models/{id}/scheduler, DELETE /v1/models/{id}), in logs and in metric labels, so a slash
/// (unreachable as a path segment), "..", control or bidirectional characters are never allowed,
/// and two ids may not differ only in case (a client that lowercases would reach the other model).
/// </summary>
public static class ModelIds
{
    public const int MaxLength = 128;

    /// <summary>Why <paramref name="id"/> is not a valid model id, or null when it is.</summary>
    public static string? Problem(string? id)
    {
        if (string.IsNullOrEmpty(id)) return "the model id is empty";
        if (id.Length > MaxLength) return $"the model id is {id.Length} characters long, at most {MaxLength} are allowed";
        if (!char.IsAsciiLetterOrDigit(id[0])) return $"the model id must start with a letter or digit (got '{Printable(id[0])}')";
        for (int i = 0; i < id.Length; i++)
        {
            char c = id[i];
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('.' or '_' or '-' or ':'))
                return $"the model id may contain only ASCII letters, digits and . _ - : (character {i} is '{Printable(c)}')";
        }
        if (id.Contains("..", StringComparison.Ordinal)) return "the model id must not contain '..'";
        return null;
    }

    private static string Printable(char c) => char.IsControl(c) || char.IsSurrogate(c) || c > '\u007e' ? $"U+{(int)c:X4}" : c.ToString();
}
