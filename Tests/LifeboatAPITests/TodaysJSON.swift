// Today's JSON, as the agent and `lifeboat` wrote it before the models moved here: printed by
// the old types (with their hand-written CodingKeys) and the old CLI code (JSONSerialization),
// fed with the values `Fixtures` builds. Any change to these strings is a change users see.

/// `POST /v1/workloads/NAME/snapshot` (and `last_snapshot`) for `Fixtures.snapshot`.
let snapshotJSON = #"""
    {
      "base_bytes_read" : 65536,
      "changed_bytes_read" : 1048576,
      "changed_bytes_read_during_stall" : 4096,
      "files" : 17,
      "journal_segments_removed" : 2,
      "method" : "delta",
      "new_bytes" : 524288,
      "parent" : "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
      "position" : "2:1042",
      "scan_bytes_read" : 0,
      "seconds" : 0.8125,
      "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      "stall_ms" : 3.25,
      "stored_bytes" : 131072,
      "total_bytes" : 10485760,
      "workload" : "redis"
    }
    """#

/// `last_recovery` for `Fixtures.recovery`.
let recoveryJSON = #"""
    {
      "delta_bytes" : 49152,
      "delta_peer" : "h3",
      "delta_records" : 12,
      "delta_seconds" : 0.125,
      "detection_seconds" : 1.5,
      "epoch" : 2,
      "kind" : "failover",
      "lease_seconds" : 0.015625,
      "local_records" : 30,
      "mount_seconds" : 0.03125,
      "position" : "1:1042",
      "replay_seconds" : 0.0625,
      "replayed_records" : 42,
      "service_start_seconds" : 0.5,
      "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      "snapshot_bytes" : 10485760,
      "snapshot_load_seconds" : 0.25,
      "snapshot_position" : "1:1000",
      "started_at" : 1767225600.5,
      "total_seconds" : 2.5
    }
    """#

/// `GET /v1/status` of a clustered agent for `Fixtures.cluster`.
let clusterJSON = #"""
    {
      "coordinator" : "local:/mnt/volume/coordinator",
      "host" : "h2",
      "peers" : [
        {
          "address" : "10.0.0.1:7441",
          "api" : "http://10.0.0.1:7440",
          "host" : "h1"
        },
        {
          "address" : "10.0.0.3:7441",
          "api" : "http://10.0.0.3:7440",
          "host" : "h3"
        }
      ],
      "repository" : "/mnt/volume/repo",
      "workloads" : [
        {
          "alert" : "sync peers timed out; writes continue async",
          "durable_position" : "2:1041",
          "epoch" : 2,
          "last_recovery" : {
            "delta_bytes" : 49152,
            "delta_peer" : "h3",
            "delta_records" : 12,
            "delta_seconds" : 0.125,
            "detection_seconds" : 1.5,
            "epoch" : 2,
            "kind" : "failover",
            "lease_seconds" : 0.015625,
            "local_records" : 30,
            "mount_seconds" : 0.03125,
            "position" : "1:1042",
            "replay_seconds" : 0.0625,
            "replayed_records" : 42,
            "service_start_seconds" : 0.5,
            "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "snapshot_bytes" : 10485760,
            "snapshot_load_seconds" : 0.25,
            "snapshot_position" : "1:1000",
            "started_at" : 1767225600.5,
            "total_seconds" : 2.5
          },
          "last_snapshot" : {
            "base_bytes_read" : 65536,
            "changed_bytes_read" : 1048576,
            "changed_bytes_read_during_stall" : 4096,
            "files" : 17,
            "journal_segments_removed" : 2,
            "method" : "delta",
            "new_bytes" : 524288,
            "parent" : "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
            "position" : "2:1042",
            "scan_bytes_read" : 0,
            "seconds" : 0.8125,
            "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "stall_ms" : 3.25,
            "stored_bytes" : 131072,
            "total_bytes" : 10485760,
            "workload" : "redis"
          },
          "lease_expires_in" : 4.75,
          "lease_holder" : "h2",
          "mounted" : true,
          "name" : "redis",
          "newest_snapshot" : {
            "position" : "2:1042",
            "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
          },
          "oldest_seq" : 1000,
          "peers" : [
            {
              "bytes_sent" : 0,
              "connected" : false,
              "host" : "h1",
              "last_error" : "connection refused"
            },
            {
              "acked" : "2:1040",
              "bytes_sent" : 123456,
              "connected" : true,
              "host" : "h3",
              "lag" : 2
            },
            {
              "bytes_sent" : 512,
              "connected" : true,
              "host" : "h4"
            }
          ],
          "position" : "2:1042",
          "replication" : "sync",
          "role" : "primary",
          "service" : {
            "pid" : 4242,
            "state" : "running"
          }
        },
        {
          "epoch" : 1,
          "mounted" : false,
          "name" : "sqlite",
          "oldest_seq" : 1,
          "peers" : [

          ],
          "replication" : "async",
          "role" : "peer",
          "service" : {
            "state" : "stopped"
          }
        }
      ]
    }
    """#

/// `GET /v1/status` of a standalone agent for `Fixtures.standalone`.
let standaloneJSON = #"""
    {
      "host" : "h1",
      "repository" : "/mnt/volume/repo",
      "workloads" : [
        {
          "backing_dir" : "/var/lib/lifeboat/redis/backing",
          "data_dir" : "/srv/redis",
          "dirty_bytes" : 8192,
          "dirty_files" : 3,
          "durable_position" : "1:7",
          "epoch" : 1,
          "journal_dir" : "/var/lib/lifeboat/redis/journal",
          "last_snapshot" : {
            "base_bytes_read" : 65536,
            "changed_bytes_read" : 1048576,
            "changed_bytes_read_during_stall" : 4096,
            "files" : 17,
            "journal_segments_removed" : 2,
            "method" : "delta",
            "new_bytes" : 524288,
            "parent" : "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
            "position" : "2:1042",
            "scan_bytes_read" : 0,
            "seconds" : 0.8125,
            "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "stall_ms" : 3.25,
            "stored_bytes" : 131072,
            "total_bytes" : 10485760,
            "workload" : "redis"
          },
          "mounted" : true,
          "name" : "redis",
          "position" : "1:7"
        },
        {
          "backing_dir" : "/srv/empty.backing",
          "data_dir" : "/srv/empty",
          "dirty_bytes" : 0,
          "dirty_files" : 0,
          "epoch" : 1,
          "journal_dir" : "/srv/empty.journal",
          "mounted" : false,
          "name" : "empty"
        }
      ]
    }
    """#

/// The failover request body naming a target.
let failoverRequestJSON = #"""
    {
      "to" : "h3"
    }
    """#

/// The failover request body naming none.
let emptyFailoverRequestJSON = #"""
    {

    }
    """#

/// `POST /v1/workloads/NAME/failover` for `Fixtures.failoverAnswer`.
let failoverAnswerJSON = #"""
    {
      "from" : "h2",
      "handover_seconds" : 1.375,
      "to" : "h3",
      "workload" : "redis"
    }
    """#

/// An error answer (`error`, `exit_code`).
let errorJSON = #"""
    {
      "error" : "workload redis is peer on h1; snapshots are taken by its primary (h2)",
      "exit_code" : 2
    }
    """#

/// `lifeboat status --json` for `Fixtures.overview` (slashes escaped: JSONSerialization wrote it).
let statusListJSON = #"""
    {
      "hosts" : [
        {
          "host" : "h2",
          "reachable" : true,
          "status" : {
            "coordinator" : "local:\/mnt\/volume\/coordinator",
            "host" : "h2",
            "peers" : [
              {
                "address" : "10.0.0.1:7441",
                "api" : "http:\/\/10.0.0.1:7440",
                "host" : "h1"
              },
              {
                "address" : "10.0.0.3:7441",
                "api" : "http:\/\/10.0.0.3:7440",
                "host" : "h3"
              }
            ],
            "repository" : "\/mnt\/volume\/repo",
            "workloads" : [
              {
                "alert" : "sync peers timed out; writes continue async",
                "durable_position" : "2:1041",
                "epoch" : 2,
                "last_recovery" : {
                  "delta_bytes" : 49152,
                  "delta_peer" : "h3",
                  "delta_records" : 12,
                  "delta_seconds" : 0.125,
                  "detection_seconds" : 1.5,
                  "epoch" : 2,
                  "kind" : "failover",
                  "lease_seconds" : 0.015625,
                  "local_records" : 30,
                  "mount_seconds" : 0.03125,
                  "position" : "1:1042",
                  "replay_seconds" : 0.0625,
                  "replayed_records" : 42,
                  "service_start_seconds" : 0.5,
                  "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                  "snapshot_bytes" : 10485760,
                  "snapshot_load_seconds" : 0.25,
                  "snapshot_position" : "1:1000",
                  "started_at" : 1767225600.5,
                  "total_seconds" : 2.5
                },
                "last_snapshot" : {
                  "base_bytes_read" : 65536,
                  "changed_bytes_read" : 1048576,
                  "changed_bytes_read_during_stall" : 4096,
                  "files" : 17,
                  "journal_segments_removed" : 2,
                  "method" : "delta",
                  "new_bytes" : 524288,
                  "parent" : "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                  "position" : "2:1042",
                  "scan_bytes_read" : 0,
                  "seconds" : 0.8125,
                  "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                  "stall_ms" : 3.25,
                  "stored_bytes" : 131072,
                  "total_bytes" : 10485760,
                  "workload" : "redis"
                },
                "lease_expires_in" : 4.75,
                "lease_holder" : "h2",
                "mounted" : true,
                "name" : "redis",
                "newest_snapshot" : {
                  "position" : "2:1042",
                  "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                },
                "oldest_seq" : 1000,
                "peers" : [
                  {
                    "bytes_sent" : 0,
                    "connected" : false,
                    "host" : "h1",
                    "last_error" : "connection refused"
                  },
                  {
                    "acked" : "2:1040",
                    "bytes_sent" : 123456,
                    "connected" : true,
                    "host" : "h3",
                    "lag" : 2
                  },
                  {
                    "bytes_sent" : 512,
                    "connected" : true,
                    "host" : "h4"
                  }
                ],
                "position" : "2:1042",
                "replication" : "sync",
                "role" : "primary",
                "service" : {
                  "pid" : 4242,
                  "state" : "running"
                }
              },
              {
                "epoch" : 1,
                "mounted" : false,
                "name" : "sqlite",
                "oldest_seq" : 1,
                "peers" : [

                ],
                "replication" : "async",
                "role" : "peer",
                "service" : {
                  "state" : "stopped"
                }
              }
            ]
          }
        },
        {
          "error" : "cannot reach the agent at http:\/\/10.0.0.1:7440: Could not connect to the server.; is lifeboatd running and listening there?",
          "host" : "h1",
          "reachable" : false
        },
        {
          "host" : "h3",
          "reachable" : true,
          "status" : {
            "host" : "h1",
            "repository" : "\/mnt\/volume\/repo",
            "workloads" : [
              {
                "backing_dir" : "\/var\/lib\/lifeboat\/redis\/backing",
                "data_dir" : "\/srv\/redis",
                "dirty_bytes" : 8192,
                "dirty_files" : 3,
                "durable_position" : "1:7",
                "epoch" : 1,
                "journal_dir" : "\/var\/lib\/lifeboat\/redis\/journal",
                "last_snapshot" : {
                  "base_bytes_read" : 65536,
                  "changed_bytes_read" : 1048576,
                  "changed_bytes_read_during_stall" : 4096,
                  "files" : 17,
                  "journal_segments_removed" : 2,
                  "method" : "delta",
                  "new_bytes" : 524288,
                  "parent" : "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                  "position" : "2:1042",
                  "scan_bytes_read" : 0,
                  "seconds" : 0.8125,
                  "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                  "stall_ms" : 3.25,
                  "stored_bytes" : 131072,
                  "total_bytes" : 10485760,
                  "workload" : "redis"
                },
                "mounted" : true,
                "name" : "redis",
                "position" : "1:7"
              },
              {
                "backing_dir" : "\/srv\/empty.backing",
                "data_dir" : "\/srv\/empty",
                "dirty_bytes" : 0,
                "dirty_files" : 0,
                "epoch" : 1,
                "journal_dir" : "\/srv\/empty.journal",
                "mounted" : false,
                "name" : "empty"
              }
            ]
          }
        }
      ]
    }
    """#

/// `lifeboat status --json` asking a standalone agent.
let standaloneStatusListJSON = #"""
    {
      "hosts" : [
        {
          "host" : "h1",
          "reachable" : true,
          "status" : {
            "host" : "h1",
            "repository" : "\/mnt\/volume\/repo",
            "workloads" : [
              {
                "backing_dir" : "\/var\/lib\/lifeboat\/redis\/backing",
                "data_dir" : "\/srv\/redis",
                "dirty_bytes" : 8192,
                "dirty_files" : 3,
                "durable_position" : "1:7",
                "epoch" : 1,
                "journal_dir" : "\/var\/lib\/lifeboat\/redis\/journal",
                "last_snapshot" : {
                  "base_bytes_read" : 65536,
                  "changed_bytes_read" : 1048576,
                  "changed_bytes_read_during_stall" : 4096,
                  "files" : 17,
                  "journal_segments_removed" : 2,
                  "method" : "delta",
                  "new_bytes" : 524288,
                  "parent" : "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                  "position" : "2:1042",
                  "scan_bytes_read" : 0,
                  "seconds" : 0.8125,
                  "snapshot" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                  "stall_ms" : 3.25,
                  "stored_bytes" : 131072,
                  "total_bytes" : 10485760,
                  "workload" : "redis"
                },
                "mounted" : true,
                "name" : "redis",
                "position" : "1:7"
              },
              {
                "backing_dir" : "\/srv\/empty.backing",
                "data_dir" : "\/srv\/empty",
                "dirty_bytes" : 0,
                "dirty_files" : 0,
                "epoch" : 1,
                "journal_dir" : "\/srv\/empty.journal",
                "mounted" : false,
                "name" : "empty"
              }
            ]
          }
        }
      ]
    }
    """#

/// `lifeboat status` for `Fixtures.overview`.
let statusTable = #"""
    HOST  WORKLOAD  ROLE         EPOCH  POSITION  DURABLE  LAG                SERVICE  NEWEST SNAPSHOT
    h2    redis     primary      2      2:1042    2:1041   h1=down,h3=2,h4=?  running  9f86d081 at 2:1042
    h2    sqlite    peer         1      -         -        -                  stopped  -
    h1    -         unreachable  -      -         -        -                  -        -
    h3    redis     standalone   1      1:7       1:7      -                  mounted  9f86d081 at 2:1042
    h3    empty     standalone   1      -         -        -                  -        -
    h2: ALERT sync peers timed out; writes continue async
    h2: last recovery (failover, epoch 2): detection 1.500 s, lease 0.016 s, snapshot load 0.250 s (10.0 MiB from the volume), delta 12 records / 48.0 KiB from h3 in 0.125 s (+30 held locally), replay 0.062 s, mount 0.031 s, service start 0.500 s, total 2.500 s
    h1: cannot reach the agent at http://10.0.0.1:7440: Could not connect to the server.; is lifeboatd running and listening there?
    """#

/// `lifeboat status` asking a standalone agent.
let standaloneStatusTable = #"""
    HOST  WORKLOAD  ROLE        EPOCH  POSITION  DURABLE  LAG  SERVICE  NEWEST SNAPSHOT
    h1    redis     standalone  1      1:7       1:7      -    mounted  9f86d081 at 2:1042
    h1    empty     standalone  1      -         -        -    -        -
    """#
