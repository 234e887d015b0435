PRAGMA user_version=2;
BEGIN TRANSACTION;
CREATE TABLE "audit" (
   "id" INTEGER PRIMARY KEY,
   "at" REAL NOT NULL,
   "kind" TEXT NOT NULL,
   "detail" TEXT NOT NULL
);
INSERT INTO "audit" VALUES(1,1790000000.0,'command.denied','{"from": "+4915112345678", "text": "PUMP 7 ON"}');
CREATE TABLE "event" (
   "id" INTEGER PRIMARY KEY,
   "topic" TEXT NOT NULL,
   "payload" TEXT NOT NULL,
   "qos" INTEGER NOT NULL,
   "retain" INTEGER NOT NULL,
   "created_at" REAL NOT NULL,
   "done_at" REAL
);
INSERT INTO "event" VALUES(1,'message/1','{"id": 1, "to": "+491701234567", "state": "queued", "parts": 1, "modem": null, "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(2,'message/1','{"id": 1, "to": "+491701234567", "state": "sending", "parts": 1, "modem": "sim0", "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(3,'message/1','{"id": 1, "to": "+491701234567", "state": "sent", "parts": 1, "modem": "sim0", "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(4,'message/1','{"id": 1, "to": "+491701234567", "state": "delivered", "parts": 1, "modem": "sim0", "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(5,'message/2','{"id": 2, "to": "+491701234568", "state": "queued", "parts": 1, "modem": null, "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(6,'message/2','{"id": 2, "to": "+491701234568", "state": "sending", "parts": 1, "modem": "sim0", "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(7,'message/2','{"id": 2, "to": "+491701234568", "state": "sent", "parts": 1, "modem": "sim0", "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(8,'message/3','{"id": 3, "to": "+491701234569", "state": "queued", "parts": 1, "modem": null, "at": "2026-09-21T14:13:20.000Z"}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(9,'received','{"id": 1, "from": "+491701234566", "text": "old hello", "sent_at": "2026-11-22T21:00:00+01:00", "received_at": "2026-09-21T14:13:20.000Z", "modem": "sim0", "parts": 1}',1,0,1790000000.0,1790000010.0);
INSERT INTO "event" VALUES(10,'received','{"id": 2, "from": "+491701234570", "text": "still on the SIM", "sent_at": "2026-11-22T21:00:00+01:00", "received_at": "2026-10-31T14:13:20.000Z", "modem": "sim1", "parts": 1}',1,0,1793456000.0,NULL);
CREATE TABLE "inbox" (
   "id" INTEGER PRIMARY KEY,
   "sender" TEXT,
   "text" TEXT,
   "sent_at" TEXT,
   "received_at" REAL NOT NULL,
   "modem" TEXT,
   "parts" INTEGER NOT NULL,
   "error" TEXT,
   "handled_at" REAL
, "partial" INTEGER NOT NULL DEFAULT 0, "missing" TEXT);
INSERT INTO "inbox" VALUES(1,'+491701234566','old hello','2026-11-22T21:00:00+01:00',1790000000.0,'sim0',1,NULL,1790000000.0,0,NULL);
INSERT INTO "inbox" VALUES(2,'+491701234570','still on the SIM','2026-11-22T21:00:00+01:00',1793456000.0,'sim1',1,NULL,NULL,0,NULL);
CREATE TABLE "inbox_part" (
   "id" INTEGER PRIMARY KEY,
   "modem" TEXT NOT NULL,
   "pdu" TEXT NOT NULL,
   "sender" TEXT,
   "text" TEXT,
   "encoding" TEXT,
   "sent_at" TEXT,
   "concat_reference" INTEGER,
   "concat_total" INTEGER,
   "concat_sequence" INTEGER,
   "received_at" REAL NOT NULL,
   "error" TEXT,
   "dedup_key" TEXT,
   "inbox_id" INTEGER
);
INSERT INTO "inbox_part" VALUES(1,'sim0','07AB01','+491701234566','old hello','gsm7','2026-11-22T21:00:00+01:00',NULL,NULL,NULL,1790000000.0,NULL,'bde20bf4ea04922f9962d138256246140858224b',1);
INSERT INTO "inbox_part" VALUES(2,'sim1','07AC01','+491701234570','still on the SIM','gsm7','2026-11-22T21:00:00+01:00',NULL,NULL,NULL,1793456000.0,NULL,'4d74b521e2e1391abca65713df947c121c87a036',2);
CREATE TABLE "message" (
   "id" INTEGER PRIMARY KEY,
   "client_key" TEXT,
   "source" TEXT NOT NULL DEFAULT '',
   "recipient" TEXT NOT NULL,
   "text" TEXT NOT NULL,
   "priority" INTEGER NOT NULL DEFAULT 1,
   "created_at" REAL NOT NULL,
   "valid_until" REAL,
   "report" INTEGER NOT NULL DEFAULT 0,
   "state" TEXT NOT NULL,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" REAL,
   "last_error" TEXT,
   "lease_until" REAL,
   "modem" TEXT,
   "updated_at" REAL
);
INSERT INTO "message" VALUES(1,'old-1','test','+491701234567','old delivered',1,1790000000.0,NULL,0,'delivered',1,1790000000.0,NULL,NULL,'sim0',1790000000.0);
INSERT INTO "message" VALUES(2,'old-2','test','+491701234568','old sent',1,1790000000.0,NULL,0,'sent',1,1790000000.0,NULL,NULL,'sim0',1790000000.0);
INSERT INTO "message" VALUES(3,'old-3','test','+491701234569','old queued',1,1790000000.0,NULL,0,'queued',0,1790000000.0,NULL,NULL,NULL,1790000000.0);
CREATE TABLE "part" (
   "message_id" INTEGER REFERENCES "message"("id"),
   "sequence" INTEGER,
   "total" INTEGER NOT NULL,
   "pdu" TEXT NOT NULL,
   "tpdu_length" INTEGER NOT NULL,
   "modem" TEXT,
   "message_reference" INTEGER,
   "state" TEXT NOT NULL,
   "sent_at" REAL,
   "delivered_at" REAL,
   "status" INTEGER,
   PRIMARY KEY ("message_id", "sequence")
);
INSERT INTO "part" VALUES(1,1,1,'0051B101',20,'sim0',7,'delivered',1790000000.0,1790000000.0,0);
INSERT INTO "part" VALUES(2,1,1,'0051B201',20,'sim0',8,'sent',1790000000.0,NULL,NULL);
CREATE TABLE "state" (
   "namespace" TEXT,
   "key" TEXT,
   "value" TEXT NOT NULL,
   PRIMARY KEY ("namespace", "key")
);
CREATE UNIQUE INDEX "message_idempotency"
    ON "message" ("client_key", "recipient");
CREATE INDEX "message_queue"
    ON "message" ("state", "priority", "id");
CREATE INDEX "message_created"
    ON "message" ("created_at");
CREATE UNIQUE INDEX "inbox_part_pdu"
    ON "inbox_part" ("pdu");
CREATE UNIQUE INDEX "inbox_part_dedup"
    ON "inbox_part" ("dedup_key");
CREATE INDEX "event_pending"
    ON "event" ("done_at", "id");
CREATE INDEX "inbox_part_group"
    ON "inbox_part" ("inbox_id", "sender", "concat_reference", "concat_total");
CREATE INDEX "part_report"
    ON "part" ("modem", "message_reference", "sent_at");
COMMIT;
