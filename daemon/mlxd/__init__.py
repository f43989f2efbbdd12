"""mlxd: an editor AI daemon (LSP over stdio) serving local MLX models and cloud providers."""

__version__ = "0.1.0"
