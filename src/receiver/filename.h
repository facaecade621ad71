/*
 * filename: the capture-file name grammar, in one place for the writer (which
 * makes the names) and recovery (which finds what earlier runs left):
 *
 *   PREFIX "-" [KEY "-"] STAMP "-" COUNTER "." EXT [".part"]
 *
 *   STAMP    YYYYmmddTHHMMSSZ, the UTC second the file was created
 *   COUNTER  decimal; written with at least 6 digits, read with 1 to 19
 *   EXT      "pcapng" or "pcap"
 *   KEY      a sensor id made safe for a file name (ps_fname_key): 1 to 64
 *            bytes of [A-Za-z0-9._-]; present with perSensor file sets
 *   .part    the file is still being written, or a crash left it
 *
 * The writer names a perSensor set's files with PREFIX-KEY as its prefix and
 * no KEY, so both readings of such a name agree. Pure: no I/O, no globals.
 */
#ifndef PS_FILENAME_H
#define PS_FILENAME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PS_FNAME_KEY_MAX 64
#define PS_FNAME_PART ".part"

/* The KEY for a sensor id: bytes outside [A-Za-z0-9._-] become '_', cut to
 * PS_FNAME_KEY_MAX, "_" for an empty id. Sensor ids come from the network:
 * an id like "../../etc" must not leave the directory. malloc'd, NULL on
 * OOM. Ids that map to the same KEY share a file set. */
char *ps_fname_key(const char *sensor);

/* Writes PREFIX-STAMP-COUNTER.EXT (no .part) into out. 0, or -1 with errno:
 * ENAMETOOLONG (does not fit outlen), EOVERFLOW (created has no UTC date). */
int ps_fname_format(char *out, size_t outlen, const char *prefix, time_t created, uint64_t counter,
                    int pcapng);

typedef struct ps_fname {
    const char *key; /* into the parsed name; NULL when there is no KEY */
    size_t key_len;
    uint64_t counter;
    int pcapng; /* EXT is pcapng (else pcap) */
    int part;   /* ends in .part */
} ps_fname;

/* 0 if name follows the grammar for prefix (out filled), -1 otherwise. A
 * name only fits one reading: the KEY is whatever lies between "PREFIX-" and
 * "-STAMP-COUNTER.EXT", so a caller that wants its own set's files only
 * (the writer) checks key == NULL. */
int ps_fname_parse(const char *name, const char *prefix, ps_fname *out);

#endif
