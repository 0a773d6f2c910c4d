"""The core every stage stands on: config, paths, atomic writes, records, the one structure
reader and writer, the one structural check, the stability rule, and where work runs."""
