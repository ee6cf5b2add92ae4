"""encoded-character (RFC 5228 §2.4.2.4): ``${hex:..}`` and ``${unicode:..}`` in strings.

Decoded by the compiler (:meth:`postern.sieve.compiler.Compiler.string`) when
the script requires this capability, before variables are looked for: a hex
sequence that is not UTF-8, or a code point that is not a Unicode scalar value,
is an error at upload; text that merely looks similar stays as written.
"""

CAPABILITIES = ("encoded-character",)
COMMANDS = ()
TESTS = ()
