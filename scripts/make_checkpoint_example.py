"""Write examples/checkpoint_summaries/: 20 synthetic conversations (Kura JSONL) and their summaries as a
Kura summaries checkpoint (summaries.jsonl), with no network.

The summaries stand in for a team's LLM summaries: the offline summary model's fields, written in
Kura's ConversationSummary format, with some fields left null the way Kura leaves what its LLM did
not fill (every 5th conversation: no languages; every 7th: no assistant_errors; every 9th: no scores),
so the example exercises the null rule of kura_perf/models/checkpoint_summary.py.

    python scripts/make_checkpoint_example.py [folder]
"""

from __future__ import annotations

import sys
from pathlib import Path

from kura_perf.corpus.generator import generate_conversations
from kura_perf.corpus.kura_checkpoint import kura_summary_record, write_summaries_checkpoint
from kura_perf.corpus.loaders import write_conversations_jsonl
from kura_perf.models.offline_summary import OfflineSummaryModel

N = 20
DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "examples" / "checkpoint_summaries"


def main(folder: Path) -> None:
    conversations = generate_conversations(N, seed=0)
    records = []
    for i, (conversation, fields) in enumerate(zip(conversations, OfflineSummaryModel().summarise(conversations))):
        fields = dict(fields)
        if i % 5 == 4:
            fields["languages"] = None
        if i % 7 == 6:
            fields["assistant_errors"] = None
        if i % 9 == 8:
            fields["concerning_score"] = fields["user_frustration"] = None
        records.append(kura_summary_record(conversation.chat_id, fields,
                                           metadata={"conversation_turns": len(conversation.messages)}))
    write_conversations_jsonl(conversations, folder / "conversations.jsonl")
    write_summaries_checkpoint(records, folder / "summaries.jsonl")
    print(f"wrote {len(conversations)} conversations and {len(records)} summaries to {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FOLDER)
