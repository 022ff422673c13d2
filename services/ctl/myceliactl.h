/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What myceliactl.c shares with the files of its commands (ctl-shards.c): the options, the exit
 * codes, and the bus reads whose failures every command reports the same way. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "gossip-member.h"
#include "macro.h"

/* docs/myceliactl.md, "Exit status"; 0 and 1 are EXIT_SUCCESS and EXIT_FAILURE. */
#define EXIT_USAGE 2
#define EXIT_DAEMON_DOWN 3
#define EXIT_NO_ROUTE 4

extern bool arg_json;
extern bool arg_legend;
/* token: --tokens FILE, --models M1,M2 (ctl-tokens.c); audit: --since TIME (ctl-audit.c). */
extern const char *arg_tokens;
extern const char *arg_models;
extern const char *arg_since;

/* Prints why a call to bus_name failed and returns the exit code, negated: -EXIT_DAEMON_DOWN when
 * its daemon is not on the bus, else -EXIT_FAILURE. */
int call_failed(const char *bus_name, const sd_bus_error *error, int r);
bool name_has_owner(sd_bus *bus, const char *name);
/* A string property of the object at path whose interface is named like its daemon's bus name. */
int get_string_property(sd_bus *bus, const char *name, const char *path, const char *property, char **ret);
/* Members as Gossip1 lists them; the strings stay in *ret_reply. */
int get_members(sd_bus *bus, sd_bus_message **ret_reply, GossipMember **ret, size_t *ret_n);
/* Prints o, pretty, and drops it. Returns 0. */
int json_print(json_object *o);
/* The verbs that live in files of their own. */
int verb_shards(sd_bus *bus, int argc, char **argv);
int verb_token(sd_bus *bus, int argc, char **argv);
int verb_key(sd_bus *bus, int argc, char **argv);
int verb_audit(sd_bus *bus, int argc, char **argv);
