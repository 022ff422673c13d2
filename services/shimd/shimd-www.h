/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The topology page: the static files of /mycelia/ (index.html, its script and style), read from
 * [shim] www_dir, installed with the package (PKGDATADIR/www). No data in them: the page reads
 * GET /api/mycelia/status (shimd-status.c) with the user's token. docs/topology-page.md. */
#pragma once

#include "shimd-manager.h"

/* GET or HEAD /mycelia, /mycelia/ and the page's files: answered, returns true; anything else
 * under /mycelia/ gets 404 (true too); other paths: false. */
bool www_handle(Manager *m, struct evhttp_request *req, const char *uri);
