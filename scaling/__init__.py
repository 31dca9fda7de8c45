"""Pure fitting code: the fit engine, the laws, bootstrap, reports. Never imports training code."""
