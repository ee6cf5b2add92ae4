/**
 * The app context handed to compose and settings (webmail contract): the JMAP client, the
 * session, the account, mailboxes by role, identities and a toast.
 *
 * In:   built by main once signed in.  Out: {@link AppContext}.  Fails: never.
 */

import type { Jmap, Session } from "./jmap";

export interface Mailbox {
  id: string;
  name: string;
  parentId: string | null;
  role: string | null;
  sortOrder: number;
  totalEmails: number;
  unreadEmails: number;
  totalThreads: number;
  unreadThreads: number;
  isSubscribed?: boolean;
  myRights?: Record<string, boolean>;
}

export interface EmailAddress {
  name: string | null;
  email: string;
}

export interface Identity {
  id: string;
  name: string;
  email: string;
  replyTo: EmailAddress[] | null;
  bcc: EmailAddress[] | null;
  textSignature: string;
  htmlSignature: string;
  mayDelete: boolean;
}

export interface AppContext {
  jmap: Jmap;
  session: Session;
  accountId: string;
  /** mailboxes by id, kept current by push */
  mailboxes: Map<string, Mailbox>;
  /** role ("inbox", "sent", "drafts", "trash", "junk", "archive") -> mailbox */
  byRole: Map<string, Mailbox>;
  identities: Identity[];
  /** a short message in the role=status toast */
  notify(text: string): void;
  /** ask the app to refresh mailboxes and the list (after a send, a save, a filter change) */
  refresh(): void;
  /** open an email in the reader */
  openEmail(id: string): void;
}
