namespace PiServe.Inference.Tokenization;

/// <summary>GPT-2's reversible byte ↔ printable-character map used by byte-level BPE.</summary>
internal static class ByteLevelMap
{
    /// <summary>Byte value → the character that stands for it in the vocabulary.</summary>
    public static readonly char[] ByteToChar = Build();

    /// <summary>Character → byte value, or -1 for characters outside the map.</summary>
    public static readonly short[] CharToByte = BuildInverse();

    private static char[] Build()
    {
        var map = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int next = 256;
        for (int b = 0; b < 256; b++)
            map[b] = direct[b] ? (char)b : (char)next++;
        return map;
    }

    private static short[] BuildInverse()
    {
        var inv = new short[512];
        Array.Fill(inv, (short)-1);
        for (int b = 0; b < 256; b++) inv[ByteToChar[b]] = (short)b;
        return inv;
    }

    public static int ByteOf(char c) => c < CharToByte.Length ? CharToByte[c] : -1;

    /// <summary>Maps the UTF-8 bytes of <paramref name="text"/> to byte-level characters.</summary>
    public static string Encode(string text)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }
}
