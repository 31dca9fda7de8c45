"""Pure fitting code (never JAX or training code): api, report and plot here; engine, laws, tables, mixing, tasks,
growth below."""
