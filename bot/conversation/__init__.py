"""The conversation service: what applies the pure core's (``bot.core``) decisions to the world.

- :mod:`~bot.conversation.service`: :class:`ConversationService`, what adapters and the
  dispatcher call, and the loop that applies one event: load, step, persist, perform
- :mod:`~bot.conversation.sessions`: a session's rows as the core reads them, and back
- :mod:`~bot.conversation.persist`: a step's store changes, written in one transaction
- :mod:`~bot.conversation.jobs`: generation jobs: submitting, the queue, the dispatcher's reports
- :mod:`~bot.conversation.quotas`: sessions, queued jobs and GPU time per user, the global queue
  cap; checked where a take is queued, shown by /status
- :mod:`~bot.conversation.progress_messages`, :mod:`~bot.conversation.progress`: the message
  each job keeps up to date, and its texts
- :mod:`~bot.conversation.posting`, :mod:`~bot.conversation.delivery`: posting takes and the
  final video (fitted to upload limits) exactly once, from the records of what was delivered
- :mod:`~bot.conversation.assembly`: joining the approved segments off the event loop
- :mod:`~bot.conversation.recovery`: after a restart, and retrying what could not be posted
- :mod:`~bot.conversation.admin`: the admin commands (queue, workers, stop, pause, bans) and
  the operator's snapshot (``bot.ops_view``) they show
- :mod:`~bot.conversation.chats`, :mod:`~bot.conversation.media`, :mod:`~bot.conversation.locks`,
  :mod:`~bot.conversation.background`: the chat ports, a session's files, one action at a time
  per session, and the tasks nobody awaits
"""
