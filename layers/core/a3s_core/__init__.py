"""a3s_core: the domain, engine and storage shared by every a3s-serverless function."""
